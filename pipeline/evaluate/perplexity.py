"""Perplexity stage: a checkpoint + a held-out split -> `eval/perplexity.json`.

Reports the conditions (split, batch size, sequence length, batches, tokens, dtype, device) next to the
result, as users write them by hand today (seed 001), plus NaN/Inf batch counts.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from pipeline import records
from pipeline.config.schema import Experiment
from pipeline.data.prepare import load_tokens
from pipeline.errors import DataError
from pipeline.evaluate.scoring import DTYPES, score
from pipeline.rundir import RunDir
from pipeline.train.batches import as_sequences
from pipeline.train.runtime import pick_device

log = logging.getLogger(__name__)


def pick_checkpoint(run: RunDir, step: int | None) -> Path:
    found = run.checkpoint_dirs()
    if not found:
        raise DataError(f"{run.checkpoints}: no complete checkpoint; run 'make train EXP={run.root.name}' first")
    if step is None:
        return found[-1]
    wanted = run.checkpoints / f"{step:010d}"
    if wanted not in found:
        raise DataError(
            f"eval.checkpoint: no checkpoint for step {step} (have: {', '.join(str(int(p.name)) for p in found)})"
        )
    return wanted


def load_checkpoint_model(path: Path, device: torch.device):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).to(device)


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
    result = score(model, batches, device, precision)
    elapsed = time.perf_counter() - t0
    out = {
        "checkpoint": path.name,
        "step": int(path.name),
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
        "nan_count": result["nan_count"],
        "inf_count": result["inf_count"],
        "eval_time_s": round(elapsed, 3),
        "tokens_per_s": result["tokens"] / elapsed if elapsed > 0 else None,
    }
    out = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
    records.PERPLEXITY.write(run.root, out)
    log.info("perplexity %s on %s (%d tokens)", out["perplexity"], pc.split, out["tokens"])
    return run.eval
