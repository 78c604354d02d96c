"""Prepare stage: documents -> tokenizer + token streams in `runs/<EXP>/prepared/`.

Each split is encoded batch by batch and appended to its `.npy` file (`TokenWriter`), so memory holds one batch
of ids, never the whole stream; readers memory-map the file (`load_tokens`). The encoding speed goes into
`prepared/stats.json` (`throughput`).

>>> run_prepare(load_resolved(Path("runs/smoke")), Path("runs/smoke"))  # doctest: +SKIP
>>> prepare_text_file(Path("corpus.txt"), tokenizer, Path("out"))["text_mb_per_s"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline import records
from pipeline.atomic import atomic_dir
from pipeline.config.schema import Experiment
from pipeline.data.sources import SPLITS, describe, iter_text_documents, load_documents
from pipeline.data.tokenizer import BatchEncoder, build_tokenizer
from pipeline.rundir import RunDir

log = logging.getLogger(__name__)

BATCH_DOCUMENTS = 1024
BATCH_CHARACTERS = 1 << 24  # a batch also ends here, so a corpus of few huge documents stays in bounded batches


def run_prepare(cfg: Experiment, run_dir: Path) -> Path:
    run = RunDir(run_dir)
    t0 = time.perf_counter()
    docs = load_documents(cfg.data.source, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.max_documents)
    log.info("documents: %s", {k: len(v) for k, v in docs.items()})
    t1 = time.perf_counter()
    tokenizer = build_tokenizer(cfg.data.tokenizer, docs["train"])
    t2 = time.perf_counter()
    vocab = len(tokenizer)
    if cfg.model.vocab_size and vocab > cfg.model.vocab_size:
        from pipeline.errors import ConfigError

        raise ConfigError(
            f"model.vocab_size: the tokenizer has {vocab} tokens, more than model.vocab_size={cfg.model.vocab_size}"
        )
    encoder = BatchEncoder(tokenizer)
    stats = {
        "source": describe(cfg.data.source),
        "tokenizer": cfg.data.tokenizer.type,
        "vocab_size": vocab,
        "eos_token_id": tokenizer.eos_token_id,
        "token_dtype": encoder.dtype.name,
        "splits": {},
    }
    with atomic_dir(run.prepared) as tmp:
        tokenizer.save_pretrained(tmp / "tokenizer")
        for split in SPLITS:
            total = sum(map(utf8_length, docs[split]))
            split_stats = write_split(encoder, docs[split], tmp / f"{split}.npy", split, total_bytes=total)
            stats["splits"][split] = split_stats
            log.info("%s: %d documents, %d tokens", split, split_stats["documents"], split_stats["tokens"])
        encoded = stats["splits"].values()
        seconds = sum(s["seconds"] for s in encoded)
        stats["throughput"] = {
            "encoder": encoder.kind,
            "load_seconds": round(t1 - t0, 3),
            "tokenizer_seconds": round(t2 - t1, 3),
            "encode_seconds": round(seconds, 3),
            **_rates(sum(s["bytes"] for s in encoded), sum(s["tokens"] for s in encoded), seconds),
        }
        records.PREPARED_STATS.write_file(tmp / "stats.json", stats)  # the folder is built aside, then renamed
        (tmp / "DONE").write_text("ok\n")
    return run.prepared


def prepare_text_file(path: Path, tokenizer, out_dir: Path, split: str = "train") -> dict:
    """Encode a text file of blank-line-separated documents (the `files` source's `text` format) into
    `out_dir/<split>.npy`, streaming: the file is read line by line and the ids written batch by batch. Returns the
    split's stats (documents, characters, UTF-8 bytes, tokens, seconds, MB/s of text, tokens/s)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = Path(path).stat().st_size  # the file's bytes: a close bound for the text's, for the ETA
    return write_split(BatchEncoder(tokenizer), iter_text_documents(Path(path)), out_dir / f"{split}.npy", split, total)


def write_split(encoder: BatchEncoder, docs: Iterable[str], path: Path, split: str, total_bytes: int | None) -> dict:
    """Encode `docs` batch by batch into the `.npy` file `path`, with a progress bar on stderr."""
    counts = {"documents": 0, "characters": 0, "bytes": 0, "tokens": 0}
    t0 = time.perf_counter()
    with TokenWriter(path, encoder.dtype) as out, _progress(split, total_bytes) as bar, _parallel_tokenizers():
        for batch in _batches(docs):
            ids, nbytes = encoder.encode(batch)
            out.write(ids)
            counts["documents"] += len(batch)
            counts["characters"] += sum(map(len, batch))
            counts["bytes"] += nbytes
            counts["tokens"] += int(ids.size)
            bar.update(nbytes)
            bar.set_postfix_str(f"{counts['documents']:,} docs, {counts['tokens']:,} tokens", refresh=False)
    seconds = time.perf_counter() - t0
    return {**counts, "seconds": round(seconds, 3), **_rates(counts["bytes"], counts["tokens"], seconds)}


@contextlib.contextmanager
def _parallel_tokenizers() -> Iterator[None]:
    """`tokenizers` spreads a batch over every core unless TOKENIZERS_PARALLELISM=false, which the stages set so
    that processes forked later (lm-eval, DataLoader workers) cannot deadlock on its thread pool. Nothing forks
    while prepare encodes, so it lifts that for the encoding only (the library reads the variable per call)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _rates(nbytes: int, tokens: int, seconds: float) -> dict:
    seconds = max(seconds, 1e-9)
    return {"text_mb_per_s": round(nbytes / 1e6 / seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def _batches(docs: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc)
        if len(batch) >= BATCH_DOCUMENTS or size >= BATCH_CHARACTERS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _progress(split: str, total_bytes: int | None) -> tqdm:
    """Documents, MB/s and ETA on stderr; in a log file (no terminal) a line every 30 s rather than a stream."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total_bytes or None,
        desc=f"prepare {split}",
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        file=sys.stderr,
        mininterval=0.5 if tty else 30.0,
        dynamic_ncols=tty,
    )


class TokenWriter:
    """A 1-D `.npy` file appended chunk by chunk. The header is written for length 0 and rewritten in place when
    the file closes: numpy pads every header so that the length can grow to 21 digits without moving the data."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype, self.length = Path(path), np.dtype(dtype), 0
        self.fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._header()
        self.data_offset = self.fh.tell()

    def _header(self) -> None:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        header = {"descr": descr, "fortran_order": False, "shape": (self.length,)}
        np.lib.format.write_array_header_1_0(self.fh, header)

    def write(self, ids: np.ndarray) -> None:
        if ids.dtype != self.dtype:
            raise TypeError(f"{self.path.name}: ids of dtype {ids.dtype}, the file holds {self.dtype}")
        self.fh.write(memoryview(np.ascontiguousarray(ids)).cast("B"))
        self.length += ids.size

    def close(self) -> None:
        if self.fh.closed:
            return
        self.fh.seek(0)
        self._header()
        if self.fh.tell() != self.data_offset:  # pragma: no cover - numpy's header padding changed
            raise RuntimeError(f"{self.path.name}: the .npy header changed size when rewritten")
        self.fh.close()

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_tokens(run_dir: Path, split: str, random_access: bool = False) -> np.ndarray:
    """A split's ids, memory-mapped (read-only): pages are read from disk only when a batch touches them.

    `random_access`: the kernel is told not to read ahead (`MADV_RANDOM`). Training reads rows in a shuffled
    order, and reading ahead around each row made a step's cold rows several times slower to load
    (benchmarks/README.md); sequential readers (perplexity) keep it."""
    path = RunDir(run_dir).prepared / f"{split}.npy"
    try:
        tokens = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        from pipeline.errors import DataError

        if isinstance(exc, PermissionError):
            raise
        why = "missing" if isinstance(exc, FileNotFoundError) else f"damaged ({str(exc).splitlines()[0][:120]})"
        raise DataError(
            f"{path}: {why}; prepare it again: rm {RunDir(run_dir).prepared / 'DONE'} && make report EXP=<exp>"
        ) from None
    mapped = getattr(tokens, "_mmap", None)  # None for an empty file, which numpy does not map
    if random_access and mapped is not None and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return tokens
