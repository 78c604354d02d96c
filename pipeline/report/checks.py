"""Sanity checks: small named rules `(Run) -> Finding | None`, listed once in `RULES`.

Each rule states the numbers that triggered it, so a reader can verify the verdict from the tables.
Severity: `error` (the run's result must not be trusted as is), `warning` (look before believing),
`info` (context a reader should have).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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
    if "train" not in run.stages:
        return None
    planned, done = run.steps_planned, run.steps_done
    if planned and done < planned:
        return Finding(
            "run_incomplete",
            "error",
            f"{done} of {planned} configured steps ran ({100 * done / planned:.0f}%); results describe a partial run",
        )
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
        return Finding(
            "loss_not_decreasing",
            "warning",
            f"{what} went from {first:.4f} to {last:.4f} ({-100 * drop:+.1f}%); the model did not learn measurably",
        )
    return None


def untrained_perplexity(run: Run, ratio: float = 0.5) -> Finding | None:
    """A uniform guess over V tokens has perplexity V; near that, the model has learned nothing."""
    ppl, vocab = _num((run.perplexity or {}).get("perplexity")), run.vocab_size
    if ppl is None or not vocab or not math.isfinite(ppl):
        return None
    if ppl >= ratio * vocab:
        return Finding(
            "untrained_perplexity",
            "warning",
            f"perplexity {ppl:,.1f} is {ppl / vocab:.2f}x the vocabulary size {vocab:,} "
            f"(uniform guessing gives {vocab:,}): the model behaves as untrained",
        )
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
        return Finding(
            "validation_rising",
            "warning",
            f"validation loss rose from its best {best['val_loss']:.4f} (step {int(best['step'])}) "
            f"to {last['val_loss']:.4f} at step {int(last['step'])}: overfitting or instability",
        )
    return None


def eval_not_final_checkpoint(run: Run) -> Finding | None:
    if "train" not in run.stages or not run.steps_done:
        return None
    hits = [
        f"{what} was measured on the step-{rec['step']} checkpoint"
        for what, rec in (("perplexity", run.perplexity or {}), ("the harness", run.harness_timing or {}))
        if rec.get("step") is not None and rec["step"] != run.steps_done
    ]
    if hits:
        return Finding(
            "eval_not_final_checkpoint", "warning", f"{' and '.join(hits)}, but training reached step {run.steps_done}"
        )
    return None


def resumed_run(run: Run) -> Finding | None:
    """Restarts are normal on clusters, but a reader must know the curve is stitched from several jobs."""
    if len(run.segments) < 2:
        return None
    parts = [f"segment {s['segment']}: steps {s['first_step']}–{s['last_step']}" for s in run.segments]
    redone = sum(
        max(0, prev["last_step"] - nxt["first_step"] + 1)
        for prev, nxt in zip(run.segments, run.segments[1:])
        if nxt["first_step"] <= prev["last_step"]
    )
    tail = f"; {redone} step(s) were trained again after a restart (curves show the later values)" if redone else ""
    return Finding("resumed_run", "info", f"training ran in {len(run.segments)} segments ({'; '.join(parts)}){tail}")


def planned_steps_unknown(run: Run) -> Finding | None:
    if run.imported is not None and "train" in run.stages and run.steps_planned is None:
        return Finding(
            "planned_steps_unknown",
            "warning",
            f"the {run.imported.get('format')} source does not record how many steps were planned, so "
            f"whether the run finished cannot be told from data ({run.steps_done} steps logged); "
            f"re-import with STEPS=<n> if you know it",
        )
    return None


def import_warnings(run: Run) -> Finding | None:
    warnings = (run.imported or {}).get("warnings") or []
    if warnings:
        return Finding("import_warnings", "warning", "the import noted: " + "; ".join(warnings))
    return None


def uncommitted_code(run: Run) -> Finding | None:
    git = (run.provenance or {}).get("git") or {}
    if git.get("dirty"):
        return Finding(
            "uncommitted_code",
            "info",
            f"the code had uncommitted changes (diff sha256 {str(git.get('diff_sha256'))[:12]}); "
            f"commit {str(git.get('commit'))[:10]} alone does not reproduce this run",
        )
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
        return Finding(
            "subset_only",
            "warning",
            "evaluated on a subset (limit): " + "; ".join(parts) + "; not comparable to full-set scores",
        )
    return None


def _bench_ok(run: Run) -> dict[str, dict]:
    return {n: v for n, v in ((run.bench or {}).get("variants") or {}).items() if v.get("status") == "ok"}


def _close(a, b, rel: float) -> bool:
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def identical_measurements(run: Run, rel: float = 0.005) -> Finding | None:
    """Variants with different settings but the same time and memory: the setting probably never applied."""
    ok, pairs = _bench_ok(run), []
    names = list(ok)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            va, vb = ok[a], ok[b]
            if (
                va["requested"] != vb["requested"]
                and _close(va["step_time_median_s"], vb["step_time_median_s"], rel)
                and _close(va["mem_peak_allocated_gib"], vb["mem_peak_allocated_gib"], rel)
            ):
                pairs.append(
                    f"{a} and {b} ({va['step_time_median_s'] * 1e3:.2f} vs {vb['step_time_median_s'] * 1e3:.2f} ms, "
                    f"{va['mem_peak_allocated_gib']:.3f} vs {vb['mem_peak_allocated_gib']:.3f} GiB)"
                )
    if pairs:
        return Finding(
            "identical_measurements",
            "warning",
            "different settings, same time and memory within 0.5%: "
            + "; ".join(pairs)
            + " — check that the setting reached the model (see resolved settings)",
        )
    return None


def qlora_not_smaller(run: Run) -> Finding | None:
    ok = _bench_ok(run)
    lora = {n: v for n, v in ok.items() if v["requested"]["finetune"] == "lora"}
    qlora = {n: v for n, v in ok.items() if v["requested"]["finetune"] == "qlora"}
    hits = [
        f"{q} {vq['mem_peak_allocated_gib']:.3f} GiB >= {lo} {vl['mem_peak_allocated_gib']:.3f} GiB"
        for q, vq in qlora.items()
        for lo, vl in lora.items()
        if vq["requested"]["precision"] == vl["requested"]["precision"]
        and vq["mem_peak_allocated_gib"] >= vl["mem_peak_allocated_gib"]
    ]
    if hits:
        kind = next(iter(qlora.values()))["mem_kind"]
        why = (
            " (CPU peak RSS is dominated by the libraries loaded, not the weights)"
            if kind == "cpu_peak_rss"
            else " (4-bit weights should need about a quarter of bf16 memory)"
        )
        return Finding("qlora_not_smaller", "warning", "QLoRA peak memory is not below LoRA: " + "; ".join(hits) + why)
    return None


def within_noise(run: Run) -> Finding | None:
    """A variant whose time is within the baseline's repeat spread has not been shown to differ."""
    ok, base = _bench_ok(run), (run.bench or {}).get("baseline")
    if base not in ok:
        return None
    b = ok[base]
    hits = [
        f"{n} {v['step_time_median_s'] * 1e3:.2f}±{v['step_time_median_s_std'] * 1e3:.2f} ms vs "
        f"{b['step_time_median_s'] * 1e3:.2f}±{b['step_time_median_s_std'] * 1e3:.2f} ms"
        for n, v in ok.items()
        if n != base
        and abs(v["step_time_median_s"] - b["step_time_median_s"])
        <= v["step_time_median_s_std"] + b["step_time_median_s_std"]
    ]
    if hits:
        return Finding("within_noise", "info", f"step time within the repeat spread of {base}: " + "; ".join(hits))
    return None


def resolved_mismatch(run: Run) -> Finding | None:
    hits = [f"{n}: {m}" for n, v in _bench_ok(run).items() for m in v.get("mismatches", [])]
    if hits:
        return Finding("resolved_mismatch", "error", "a variant did not get what it asked for: " + "; ".join(hits))
    return None


def bench_failures(run: Run) -> Finding | None:
    variants = (run.bench or {}).get("variants") or {}
    failed = [f"{n} ({'; '.join(v['errors'])})" for n, v in variants.items() if v["status"] == "failed"]
    if failed:
        return Finding("bench_failures", "warning", "variants failed: " + "; ".join(failed))
    return None


RULES: list[Callable[[Run], Finding | None]] = [
    run_incomplete,
    planned_steps_unknown,
    nonfinite_loss,
    loss_not_decreasing,
    untrained_perplexity,
    validation_rising,
    eval_not_final_checkpoint,
    resumed_run,
    import_warnings,
    at_chance,
    subset_only,
    resolved_mismatch,
    identical_measurements,
    qlora_not_smaller,
    bench_failures,
    within_noise,
    damaged_files,
    uncommitted_code,
]


def run_checks(run: Run, rules=None) -> list[Finding]:
    found = [f for rule in (rules or RULES) if (f := rule(run)) is not None]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])
