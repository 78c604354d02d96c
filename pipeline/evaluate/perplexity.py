"""Perplexity stage: a checkpoint + a held-out split -> `eval/perplexity.json`.

Reports the conditions (split, batch size, sequence length, batches, tokens, dtype, device) next to the
result, as users write them by hand today (seed 001), plus NaN/Inf batch counts.

Tokenizer-free units: the scored text's UTF-8 bytes and characters (every predicted token's bytes, from the
run's own tokenizer) give bits per byte and bits per character, which compare across tokenizers (a perplexity
ratio does not: a byte model predicts ~4x as many, much easier, tokens). `eval/perplexity_items.jsonl` keeps
each sequence's loss sum, tokens and bytes, for the report's bootstrap CI over documents.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import records
from pipeline.config.schema import Experiment
from pipeline.data.prepare import load_tokens
from pipeline.errors import DataError
from pipeline.evaluate.scoring import DTYPES, score
from pipeline.rundir import RunDir
from pipeline.train.batches import as_sequences
from pipeline.train.checkpoint import checkpoint_step, verify
from pipeline.train.runtime import pick_device

log = logging.getLogger(__name__)


def pick_checkpoint(run: RunDir, step: int | str | None) -> Path:
    """`eval.checkpoint`: a step, 'best' (checkpoints/best/, train.keep_best) or 'last'/None (the newest), whose
    files match their checksums (a damaged checkpoint is one clear error, never a silently wrong evaluation)."""
    found = run.checkpoint_dirs()
    if not found:
        raise DataError(f"{run.checkpoints}: no complete checkpoint; run 'make train EXP={run.root.name}' first")
    if step == "best":
        chosen = run.checkpoints / "best"
        if not (chosen / "train_state.pt").is_file():
            raise DataError(f"eval.checkpoint: best: {chosen} does not exist (no validation pass after step 0 yet)")
    elif step is None or step == "last":
        chosen = found[-1]
    else:
        chosen = run.checkpoints / f"{step:010d}"
        if chosen not in found:
            have = ", ".join(str(int(p.name)) for p in found)
            raise DataError(f"eval.checkpoint: no checkpoint for step {step} (have: {have})")
    why = _damage(chosen)
    if why:
        raise DataError(
            f"{chosen}: {why}: the checkpoint is damaged; evaluate another one (eval.checkpoint: <step>) or train "
            "the run again"
        )
    return chosen


_VERIFIED: dict[tuple, str | None] = {}


def _damage(folder: Path) -> str | None:
    """checkpoint.verify, once per folder as it is now (perplexity and lm-eval both pick it, and the eval stage holds
    the run's lock: hashing a large model's files and optimizer state once is enough)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    key = (str(folder), *((str(p), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) for p in files))
    if key not in _VERIFIED:
        _VERIFIED[key] = verify(folder)
    return _VERIFIED[key]


def token_bytes(run_root: Path) -> np.ndarray | None:
    """UTF-8 bytes of each token id of the run's tokenizer (EOS counts as one byte, the document separator);
    None when the tokenizer cannot be read."""
    try:
        from tokenizers import pre_tokenizers
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(RunDir(run_root).prepared / "tokenizer"))
    except (OSError, ValueError):
        return None
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    special = set(tok.all_special_tokens)
    byte_level = all(p in special or set(p) <= alphabet for p in pieces if p)
    out = np.zeros(len(pieces), dtype=np.int64)
    for i, piece in enumerate(pieces):
        if piece in special:
            out[i] = 1
        elif byte_level:  # ByteLevel maps each byte to one printable character
            out[i] = len(piece)
        else:
            out[i] = len(tok.decode([i]).encode("utf-8"))
    return out


def load_checkpoint_model(path: Path, device: torch.device):
    from pipeline.model import load_checkpoint

    return load_checkpoint(path, device)


def _characters(run_root: Path, rows: np.ndarray) -> int | None:
    """Characters of the predicted text (each sequence decoded without its first token)."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(RunDir(run_root).prepared / "tokenizer"))
    except (OSError, ValueError):
        return None
    texts = tok.batch_decode(np.asarray(rows[:, 1:], dtype=np.int64).tolist(), skip_special_tokens=False)
    eos = tok.eos_token or ""
    return sum(len(t.replace(eos, "\n")) if eos else len(t) for t in texts)


def run_perplexity(cfg: Experiment, run_dir: Path) -> Path:
    run, pc = RunDir(run_dir), cfg.eval.perplexity
    path = pick_checkpoint(run, cfg.eval.checkpoint)
    device = pick_device(cfg.train.device)
    precision = pc.precision or cfg.train.precision
    seq_len = pc.seq_len or cfg.seq_len
    rows = as_sequences(load_tokens(run.root, pc.split), seq_len)
    if pc.max_batches:
        rows = rows[: pc.max_batches * pc.batch_size]
    if len(rows) == 0:
        raise DataError(f"eval.perplexity.seq_len: the {pc.split} split has fewer than {seq_len} tokens")
    model = load_checkpoint_model(path, device)
    batches = (
        torch.from_numpy(rows[i : i + pc.batch_size].astype("int64")) for i in range(0, len(rows), pc.batch_size)
    )
    t0 = time.perf_counter()
    per_row: list = []
    result = score(model, batches, device, precision, per_row)
    elapsed = time.perf_counter() - t0
    sizes = token_bytes(run.root)
    items, n_bytes, n_chars = [], None, None
    if sizes is not None and len(per_row) == len(rows):  # every batch finite: rows and losses line up
        row_bytes = sizes[np.minimum(np.asarray(rows[:, 1:], dtype=np.int64), len(sizes) - 1)].sum(axis=1)
        n_bytes = int(row_bytes.sum())
        n_chars = _characters(run.root, rows)
        items = [
            {"index": i, "loss_sum": round(loss, 6), "tokens": int(t), "bytes": int(b)}
            for i, ((loss, t), b) in enumerate(zip(per_row, row_bytes))
        ]
    bits = result["loss"] * result["tokens"] / math.log(2) if result["tokens"] else None
    out = {
        "checkpoint": path.name,
        "step": checkpoint_step(path),
        "split": pc.split,
        "batch_size": pc.batch_size,
        "seq_len": seq_len,
        "batches": result["batches"],
        "valid_batches": result["valid_batches"],
        "tokens": result["tokens"],
        "dtype": str(DTYPES[precision]).removeprefix("torch."),
        "device": str(device),
        "loss": result["loss"],
        "perplexity": result["perplexity"],
        "accuracy": result["accuracy"],
        "bytes": n_bytes,
        "characters": n_chars,
        "bits_per_byte": bits / n_bytes if bits is not None and n_bytes else None,
        "bits_per_char": bits / n_chars if bits is not None and n_chars else None,
        "nan_count": result["nan_count"],
        "inf_count": result["inf_count"],
        "eval_time_s": round(elapsed, 3),
        "tokens_per_s": result["tokens"] / elapsed if elapsed > 0 else None,
    }
    out = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
    records.PERPLEXITY.write(run.root, out)
    records.PERPLEXITY_ITEMS.write_rows(run.root, items)
    log.info("perplexity %s on %s (%d tokens)", out["perplexity"], pc.split, out["tokens"])
    return run.eval
