"""Synthetic run directories of any length, for the report's scale benchmarks (`benchmarks/scale.py`).

`make_run(run_dir, lines)` writes a finished native run — resolved config and stamps (`freeze`, as `resolve`
does), prepared stats, plan, `lines` metric rows, validation passes, train/DONE, perplexity, provenance — through
the records of `pipeline/records.py` (validated, atomic), except the metric and validation logs: those are
formatted with one %-template per row, since a million `json.dumps` calls would take longer than the report
being measured. Every value is a deterministic function of the step (a noisy power-law loss curve, cosine LR), so
two calls with the same arguments give the same bytes apart from the stage dates.

>>> import tempfile, pathlib
>>> from pipeline.report.loader import load_run
>>> run = load_run(make_run(pathlib.Path(tempfile.mkdtemp()) / "runs" / "syn", 500))
>>> len(run.metrics), run.status, run.problems
(500, 'completed', [])
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from pipeline import records
from pipeline.atomic import atomic_path
from pipeline.config.resolve import config_hash, freeze
from pipeline.config.schema import Experiment
from pipeline.rundir import RunDir

START = datetime(2026, 1, 1, tzinfo=UTC)
TOKENS_PER_STEP = 32 * 2048  # the debug_3 shape: batch 32 × sequence 2048
STEP_S = 0.123  # ≈ one H100 step of the debug_3 model


def experiment(name: str, steps: int, validations: int, compare_to: str | None = None) -> Experiment:
    return Experiment.model_validate(
        {
            "name": name,
            "description": f"synthetic run of {steps:,} logged steps (benchmarks/synthetic.py)",
            "model": {"dim": 64, "layers": 2, "heads": 4, "max_seq_len": 2048},
            "data": {"source": {"type": "builtin", "name": "kjv"}, "tokenizer": {"type": "bytes"}, "seq_len": 2048},
            "train": {"steps": steps, "batch_size": 32, "log_every": 1, "eval_every": max(1, steps // validations)},
            "report": {"title": f"Synthetic {name}", "compare_to": compare_to},
        }
    )


def _times(steps: np.ndarray, offset_s: float = 0.0) -> tuple[np.ndarray, str]:
    """The UTC time of each step at STEP_S seconds a step, as a JSON string column."""
    ms = np.datetime64(START.replace(tzinfo=None), "ms") + ((steps * STEP_S + offset_s) * 1e3).astype("timedelta64[ms]")
    return np.datetime_as_string(ms, unit="s"), '"%s+00:00"'


def write_jsonl(path: Path, columns: dict[str, tuple[np.ndarray, str]], chunk: int = 100_000) -> None:
    """`{"k": v, ...}` per row from (values, %-format) columns, one format string for every row, written
    atomically in chunks. Not through `atomic.write_text`: its secret scrubber would spend minutes on a few hundred
    MB of numbers that hold no secret."""
    template = "{" + ", ".join(f'"{key}": {spec}' for key, (_, spec) in columns.items()) + "}\n"
    n = len(next(iter(columns.values()))[0])
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for start in range(0, n, chunk):
            values = [v[start : start + chunk].tolist() for v, _ in columns.values()]
            fh.write("".join(template % row for row in zip(*values)))


def metric_columns(steps: np.ndarray, segment: np.ndarray, seed: int = 0) -> dict[str, tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    n = len(steps)
    loss = 2.0 + 5.6 * (1 + steps / 200.0) ** -0.5 + rng.normal(0, 0.05, n)
    total = int(steps.max()) if n else 1
    lr = 3e-4 * 0.5 * (1 + np.cos(np.pi * steps / total))
    tps = TOKENS_PER_STEP / STEP_S * (1 + rng.normal(0, 0.02, n))
    times = _times(steps, offset_s=1.0)
    return {
        "step": (steps, "%d"),
        "epoch": (steps / 1e5, "%.6f"),
        "loss": (loss, "%.6f"),
        "grad_norm": (np.abs(rng.normal(0.9, 0.2, n)), "%.5f"),
        "lr": (lr, "%.6g"),
        "tokens": (steps * TOKENS_PER_STEP, "%d"),
        "tokens_per_s": (tps, "%.1f"),
        "step_time_s": (TOKENS_PER_STEP / tps, "%.5f"),
        "data_time_s": (np.full(n, 0.0004), "%.4f"),
        "mem_peak_gib": (np.full(n, 41.5), "%.2f"),
        "flops_per_token": (np.full(n, 7.1e8), "%.4g"),
        "flops_per_s": (7.1e8 * tps, "%.4g"),
        "mfu": (7.1e8 * tps / 7.5e14, "%.4f"),
        "mfu_datasheet": (7.1e8 * tps / 9.89e14, "%.4f"),
        "host_load": (np.full(n, 0.01), "%.3f"),
        "segment": (segment, "%d"),
        "time_utc": times,
    }


def make_run(
    run_dir: Path, lines: int, *, validations: int = 100, segments: int = 1, compare_to: str | None = None
) -> Path:
    """A completed run of `lines` logged steps (log_every 1) in `run_dir` (its name is the experiment's), with
    `validations` + 1 validation passes and `segments` launches (a resume appends the rest of the log)."""
    run_dir = Path(run_dir)
    root = RunDir(run_dir)
    cfg = experiment(run_dir.name, lines, validations, compare_to)
    freeze(cfg, root)
    steps = np.arange(1, lines + 1)
    segment = np.minimum(np.arange(lines) * segments // max(lines, 1), segments - 1)
    write_jsonl(records.METRICS.at(run_dir), metric_columns(steps, segment))
    every = cfg.train.eval_every
    val_steps = np.arange(0, lines + 1, every)
    val_loss = 2.0 + 5.6 * (1 + val_steps / 200.0) ** -0.5
    times = _times(val_steps)
    write_jsonl(
        records.VALIDATION.at(run_dir),
        {
            "step": (val_steps, "%d"),
            "epoch": (val_steps / 1e5, "%.6f"),
            "val_loss": (val_loss, "%.6f"),
            "val_perplexity": (np.exp(val_loss), "%.4f"),
            "val_accuracy": (0.6 - 0.3 * (1 + val_steps / 200.0) ** -0.5, "%.4f"),
            "val_tokens": (np.full(len(val_steps), 65536), "%d"),
            "time_utc": times,
        },
    )
    params = {"total": 1_200_000, "trainable": 1_200_000, "embedding": 16_640, "non_embedding": 1_183_360}
    sizes = (("train", 10**10), ("validation", 10**7), ("test", 10**7))
    records.PREPARED_STATS.write(run_dir, {
        "source": "builtin:kjv", "tokenizer": "bytes", "vocab_size": 260, "eos_token_id": 259, "token_dtype": "uint16",
        "splits": {split: {"documents": 1000, "characters": n, "tokens": n} for split, n in sizes},
    })  # fmt: skip
    records.PREPARED_DONE.at(run_dir).write_text("")
    plan = {"steps_planned": lines, "steps_per_epoch": 10**5, "tokens_per_step": TOKENS_PER_STEP,
            "train_hash": root.stamp("train").read_text().strip()}  # fmt: skip
    records.PLAN.write(run_dir, plan)
    records.TRAIN_DONE.write(run_dir, {**plan, "status": "completed", "steps_done": lines, "parameters": params,
                                       "device": "cuda", "world_size": 1, "flops_per_token": 7.1e8})  # fmt: skip
    records.cache_logs(run_dir)  # as the train stage does at its end: a long log's columns for the report
    final = float(val_loss[-1])
    records.PERPLEXITY.write(run_dir, {
        "checkpoint": f"checkpoints/{lines:010d}", "step": lines, "split": "test", "batch_size": 16, "seq_len": 2048,
        "batches": 100, "valid_batches": 100, "tokens": 3_276_800, "dtype": "bfloat16", "device": "cuda",
        "loss": final, "perplexity": float(np.exp(final)), "accuracy": 0.55, "nan_count": 0, "inf_count": 0,
    })  # fmt: skip
    records.EVAL_DONE.write(run_dir, {"perplexity": True, "harness": False, "status": "completed"})
    end = START + timedelta(seconds=lines * STEP_S + 2)
    launches = [
        {"started_utc": (START + timedelta(seconds=lines * STEP_S * i / segments)).isoformat(),
         "ended_utc": (START + timedelta(seconds=lines * STEP_S * (i + 1) / segments)).isoformat(),
         "duration_s": lines * STEP_S / segments, "host": "synthetic", "stage_hash": plan["train_hash"],
         "resumed_from": None if i == 0 else int(lines * i / segments), "steps_lost": 0}
        for i in range(segments)
    ]  # fmt: skip
    records.PROVENANCE.write(run_dir, {
        "experiment": cfg.name, "config_hash": config_hash(cfg), "host": "synthetic", "user": "bench",
        "git": {"commit": "0" * 40, "dirty": False},
        "versions": {"python": "3.11", "torch": "2.13.0", "transformers": "5.23", "datasets": "5.2"},
        "device": {"cpu": "synthetic", "cpu_count": 16, "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 80}]},
        "stages": {"train": {"launches": launches, "started_utc": START.isoformat(), "ended_utc": end.isoformat(),
                             "duration_s": lines * STEP_S, "host": "synthetic"},
                   "eval": {"started_utc": end.isoformat(), "ended_utc": end.isoformat(), "duration_s": 1.0}},
    })  # fmt: skip
    return run_dir
