"""Sanity checks: small named rules `(Run) -> Finding | None`, listed once in `RULES`.

Each rule states the numbers that triggered it, so a reader can verify the verdict from the tables.
Severity: `error` (the run's result must not be trusted as is), `warning` (look before believing),
`info` (context a reader should have).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.report.loader import Run

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_incomplete(run: Run) -> Finding | None:
    planned, done = run.steps_planned, run.steps_done
    if planned and done < planned:
        return Finding("run_incomplete", "error",
                       f"{done} of {planned} configured steps ran ({100 * done / planned:.0f}%); "
                       f"results describe a partial run")
    return None


def nonfinite_loss(run: Run) -> Finding | None:
    bad = []
    for label, frame, col in (("training loss", run.metrics, "loss"), ("validation loss", run.validation, "val_loss")):
        values = frame[col].to_numpy(dtype=float) if len(frame) else np.array([])
        n = int((~np.isfinite(values)).sum())
        if n:
            first = int(frame["step"][~np.isfinite(values)].iloc[0])
            bad.append(f"{n} non-finite {label} value(s), first at step {first}")
    ppl = run.perplexity or {}
    if ppl.get("nan_count") or ppl.get("inf_count"):
        bad.append(f"perplexity eval had {ppl.get('nan_count', 0)} NaN and {ppl.get('inf_count', 0)} Inf batches")
    if run.done and run.done.get("status") == "stopped_nonfinite":
        bad.append(f"training stopped at step {run.done.get('steps_done')}")
    return Finding("nonfinite_loss", "error", "; ".join(bad)) if bad else None


def loss_not_decreasing(run: Run, min_drop: float = 0.01) -> Finding | None:
    """Validation loss (or, without it, the mean of the first vs last quarter of training losses)."""
    val = run.validation["val_loss"].dropna() if len(run.validation) else []
    if len(val) >= 2:
        first, last, what = float(val.iloc[0]), float(val.iloc[-1]), "validation loss"
    else:
        loss = run.metrics["loss"].dropna() if len(run.metrics) else []
        if len(loss) < 4:
            return None
        k = max(1, len(loss) // 4)
        first, last, what = float(loss.iloc[:k].mean()), float(loss.iloc[-k:].mean()), "training loss"
    if not (math.isfinite(first) and math.isfinite(last)) or first <= 0:
        return None
    drop = (first - last) / first
    if drop < min_drop:
        return Finding("loss_not_decreasing", "warning",
                       f"{what} went from {first:.4f} to {last:.4f} ({-100 * drop:+.1f}%); "
                       f"the model did not learn measurably")
    return None


def untrained_perplexity(run: Run, ratio: float = 0.5) -> Finding | None:
    """A uniform guess over V tokens has perplexity V; near that, the model has learned nothing."""
    ppl, vocab = _num((run.perplexity or {}).get("perplexity")), run.vocab_size
    if ppl is None or not vocab or not math.isfinite(ppl):
        return None
    if ppl >= ratio * vocab:
        return Finding("untrained_perplexity", "warning",
                       f"perplexity {ppl:,.1f} is {ppl / vocab:.2f}x the vocabulary size {vocab:,} "
                       f"(uniform guessing gives {vocab:,}): the model behaves as untrained")
    return None


def damaged_files(run: Run) -> Finding | None:
    if run.problems:
        return Finding("damaged_files", "warning", "; ".join(run.problems))
    return None


def validation_rising(run: Run, tolerance: float = 0.02) -> Finding | None:
    val = run.validation.dropna(subset=["val_loss"]) if len(run.validation) else run.validation
    if len(val) < 3:
        return None
    best = val.loc[val["val_loss"].idxmin()]
    last = val.iloc[-1]
    if last["val_loss"] > best["val_loss"] * (1 + tolerance):
        return Finding("validation_rising", "warning",
                       f"validation loss rose from its best {best['val_loss']:.4f} (step {int(best['step'])}) "
                       f"to {last['val_loss']:.4f} at step {int(last['step'])}: overfitting or instability")
    return None


def eval_not_final_checkpoint(run: Run) -> Finding | None:
    ppl = run.perplexity or {}
    if "step" in ppl and run.steps_done and ppl["step"] != run.steps_done:
        return Finding("eval_not_final_checkpoint", "warning",
                       f"perplexity was measured on the step-{ppl['step']} checkpoint, "
                       f"but training reached step {run.steps_done}")
    return None


def uncommitted_code(run: Run) -> Finding | None:
    git = (run.provenance or {}).get("git") or {}
    if git.get("dirty"):
        return Finding("uncommitted_code", "info",
                       f"the code had uncommitted changes (diff sha256 {str(git.get('diff_sha256'))[:12]}); "
                       f"commit {str(git.get('commit'))[:10]} alone does not reproduce this run")
    return None


def at_chance(run: Run, z: float = 2.0) -> Finding | None:
    """A multiple-choice score within `z` standard errors of guessing says nothing about the model."""
    rows = run.harness.dropna(subset=["chance", "value"]) if len(run.harness) else run.harness
    hits = []
    for r in rows.itertuples():
        margin = z * r.stderr if pd.notna(r.stderr) else 0.0
        if r.value <= r.chance + margin:
            hits.append(f"{r.task} {r.metric} {r.value:.4f} vs chance {r.chance:.4f} (±{margin:.4f})")
    if hits:
        return Finding("at_chance", "warning", "at chance level (within 2 stderr or below): " + "; ".join(hits))
    return None


def subset_only(run: Run) -> Finding | None:
    frame = run.harness.dropna(subset=["n", "n_original"]) if len(run.harness) else run.harness
    partial = frame[frame["n"] < frame["n_original"]].drop_duplicates("task") if len(frame) else frame
    if len(partial):
        parts = [f"{r.task} {int(r.n)} of {int(r.n_original)}" for r in partial.itertuples()]
        return Finding("subset_only", "warning",
                       "evaluated on a subset (limit): " + "; ".join(parts) + "; not comparable to full-set scores")
    return None


RULES: list[Callable[[Run], Finding | None]] = [
    run_incomplete, nonfinite_loss, loss_not_decreasing, untrained_perplexity, validation_rising,
    eval_not_final_checkpoint, at_chance, subset_only, damaged_files, uncommitted_code,
]


def run_checks(run: Run, rules=None) -> list[Finding]:
    found = [f for rule in (rules or RULES) if (f := rule(run)) is not None]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])
