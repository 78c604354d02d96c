"""Prepare-stage encoding speed on a synthetic corpus: MB/s of text, tokens/s and peak memory.

The corpus is the built-in English text (the King James Bible's chapters and gensim's Wikipedia sample, 7.2 MB)
repeated in a fixed shuffled order up to `--mb` megabytes, as blank-line-separated documents (the `files`
source's `text` format). It is encoded by `pipeline.data.prepare.prepare_text_file`, the streaming path the stage
uses (`write_split`), with:

- `bytes`: the byte tokenizer (`data.tokenizer.type: bytes`; encoded by the numpy byte table);
- `bpe`: the project's GPT-2-style byte-level BPE (`type: bpe`) trained on the King James Bible at `--vocab`
  (GPT-2's own vocabulary is not in the offline cache; `--tokenizer-path DIR` encodes with any saved tokenizer).

The encoding runs in a fresh process, so its peak RSS is the encoder's, not the corpus builder's (`--in-process`:
one process, for CI).

    python benchmarks/prepare_throughput.py --tokenizer bytes                  # 64 MB
    python benchmarks/prepare_throughput.py --tokenizer bpe --mb 16
    python benchmarks/prepare_throughput.py --tokenizer bytes --mb 1           # seconds (CI)

Prints one table row and writes a JSON record (--out). Results go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as `make` sets it for every stage


def build_corpus(path: Path, megabytes: float) -> None:
    from pipeline.data.sources import gensim_wiki_articles, kjv_chapters

    docs = kjv_chapters() + gensim_wiki_articles()
    rng, written, target = random.Random(0), 0, int(megabytes * 1e6)
    with open(path, "w", encoding="utf-8") as fh:
        while written < target:
            order = docs[:]
            rng.shuffle(order)
            for doc in order:
                fh.write(doc + "\n\n")
                written += len(doc.encode("utf-8")) + 2
                if written >= target:
                    break


def build_tokenizer(kind: str, vocab: int, path: Path | None):
    from transformers import AutoTokenizer

    from pipeline.config.schema import BPETokenizer, ByteTokenizer
    from pipeline.data import tokenizer as tok
    from pipeline.data.sources import kjv_chapters

    if path:
        return AutoTokenizer.from_pretrained(str(path))
    if kind == "bytes":
        return tok.build_tokenizer(ByteTokenizer(type="bytes"), [])
    return tok.build_tokenizer(BPETokenizer(type="bpe", vocab_size=vocab), kjv_chapters())


def encode(corpus: Path, tokenizer_dir: Path, out_dir: Path) -> dict:
    """In this (fresh) process: encode the corpus, read the result back memory-mapped, report peak RSS."""
    import numpy as np
    from transformers import AutoTokenizer

    from pipeline.data.prepare import prepare_text_file
    from pipeline.data.tokenizer import BatchEncoder

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = prepare_text_file(corpus, tokenizer, out_dir)
    tokens = np.load(out_dir / "train.npy", mmap_mode="r")
    assert tokens.size == stats["tokens"] and int(tokens[-1]) == tokenizer.eos_token_id
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        **stats,
        "encoder": BatchEncoder(tokenizer).kind,
        "token_dtype": tokens.dtype.name,
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", choices=["bytes", "bpe"], default="bytes")
    ap.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size")
    ap.add_argument("--tokenizer-path", type=Path, help="a saved tokenizer directory to encode with instead")
    ap.add_argument("--mb", type=float, default=64.0, help="corpus size in MB of UTF-8 text")
    ap.add_argument("--workdir", type=Path, help="keep the corpus, tokenizer and tokens here (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="write the JSON record here")
    ap.add_argument("--in-process", action="store_true", help="encode in this process (peak RSS: the whole script's)")
    ap.add_argument("--encode-only", nargs=3, type=Path, metavar=("CORPUS", "TOKENIZER", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.encode_only:
        print(json.dumps(encode(*args.encode_only)))
        return {}

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / f"corpus_{args.mb:g}mb.txt"
        if not corpus.is_file():
            build_corpus(corpus, args.mb)
        tok_dir = work / (f"tokenizer_{args.tokenizer}" + (f"_{args.vocab}" if args.tokenizer == "bpe" else ""))
        if args.tokenizer_path or not tok_dir.is_dir():
            build_tokenizer(args.tokenizer, args.vocab, args.tokenizer_path).save_pretrained(tok_dir)
        out_dir = work / f"tokens_{tok_dir.name}"
        record = {"tokenizer": args.tokenizer, "vocab": args.vocab if args.tokenizer == "bpe" else 257}
        if args.in_process:
            record.update(encode(corpus, tok_dir, out_dir), in_process=True)
        else:
            cmd = [sys.executable, __file__, "--encode-only", str(corpus), str(tok_dir), str(out_dir)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"encoding failed:\n{proc.stderr[-2000:]}")
            record.update(json.loads(proc.stdout.strip().splitlines()[-1]), in_process=False)
    print(
        "| tokenizer | encoder | MB of text | documents | tokens | seconds | MB/s | tokens/s | peak RSS MiB |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        f"| {record['tokenizer']} | {record['encoder']} | {record['bytes'] / 1e6:.1f} | {record['documents']:,} "
        f"| {record['tokens']:,} | {record['seconds']:.1f} | {record['text_mb_per_s']:.2f} "
        f"| {record['tokens_per_s']:,.0f} | {record['peak_rss_mib']:,.0f} |"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
