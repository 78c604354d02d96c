"""Display tables: pick, thin and derive columns from the loader's frames. No formatting here."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.report.loader import Run


def thin(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """Evenly spaced rows, always keeping the first and the last."""
    if len(frame) <= max_rows:
        return frame
    idx = np.unique(np.linspace(0, len(frame) - 1, max_rows).round().astype(int))
    return frame.iloc[idx]


def training_table(run: Run, max_rows: int) -> pd.DataFrame:
    shown = thin(run.metrics, max_rows).copy()
    shown["delta_loss"] = shown["loss"].diff()  # change since the previous row shown
    return shown[["step", "loss", "delta_loss", "grad_norm", "lr", "tokens_per_s"]]


def validation_table(run: Run, max_rows: int) -> pd.DataFrame:
    return thin(run.validation, max_rows)[["step", "val_loss", "val_perplexity", "val_accuracy"]]


def throughput(run: Run) -> dict:
    """Median/min/max tokens/s, excluding the first log interval (it includes start-up and warm-up)."""
    tps = run.metrics["tokens_per_s"].dropna().iloc[1:] if len(run.metrics) > 1 else pd.Series(dtype=float)
    if not len(tps):
        return {}
    return {"median": float(tps.median()), "min": float(tps.min()), "max": float(tps.max()),
            "step_time_s": float(run.metrics["step_time_s"].iloc[1:].median())}


def best_validation(run: Run) -> dict | None:
    val = run.validation.dropna(subset=["val_loss"])
    if not len(val):
        return None
    return val.loc[val["val_loss"].idxmin()].to_dict()


def harness_table(run: Run) -> pd.DataFrame:
    """One row per (task, metric), stderr next to the value, chance where it is defined."""
    frame = run.harness.copy()
    if not len(frame):
        return frame
    frame["n_shown"] = frame.apply(lambda r: f"{r.n:,}" if r.n == r.n_original else f"{r.n:,} of {r.n_original:,}",
                                   axis=1)
    return frame.sort_values(["task", "metric"])


def harness_timing_rows(timing: dict | None) -> list[dict]:
    if not timing:
        return []
    rows = [{"kind": kind, **v} for kind, v in timing.get("requests", {}).items() if v.get("requests")]
    total = timing.get("total_s") or 0
    for row in rows:
        row["share"] = 100 * row["seconds"] / total if total else None
    return rows


def bench_table(run: Run) -> list[dict]:
    """One row per variant; ratios against the baseline (time ratio < 1 = faster)."""
    summary = run.bench or {}
    variants, base = summary.get("variants") or {}, summary.get("baseline")
    b = variants.get(base, {})
    rows = []
    for name, v in variants.items():
        row = {"variant": name + (" (baseline)" if name == base else ""), "status": v["status"], **v}
        if v["status"] == "ok":
            row["step_ms"] = 1e3 * v["step_time_median_s"]
            row["step_ms_std"] = 1e3 * v["step_time_median_s_std"]
            row["p90_ms"] = 1e3 * v["step_time_p90_s"]
            if b.get("status") == "ok":
                row["time_ratio"] = v["step_time_median_s"] / b["step_time_median_s"]
                row["mem_ratio"] = (v["mem_peak_allocated_gib"] / b["mem_peak_allocated_gib"]
                                    if b.get("mem_peak_allocated_gib") else None)
            row["setting"] = ", ".join(f"{k}={val}" for k, val in v["requested"].items()
                                       if summary.get("fixed", {}).get(k) != val) or "fixed conditions"
        rows.append(row)
    return rows


def bench_not_ok(run: Run) -> list[dict]:
    variants = (run.bench or {}).get("variants") or {}
    return [{"variant": n, "status": v["status"], "why": "; ".join(v["errors"])} for n, v in variants.items()
            if v["status"] != "ok"]


def curve_phases(run: Run) -> dict:
    """Phases of the validation curve (or, with fewer than 6 passes, of the median-smoothed training loss)."""
    from dataclasses import asdict

    from pipeline.report import phases

    if len(run.validation.dropna(subset=["val_loss"])) >= 6:
        steps, values, what = run.validation["step"], run.validation["val_loss"], "validation loss"
    elif len(run.metrics) >= 6:
        window = max(3, len(run.metrics) // 20)
        steps, values = run.metrics["step"], phases.smooth(run.metrics["loss"].to_numpy(dtype=float), window)
        what = f"training loss (rolling median of {window} log steps)"
    else:
        return {}
    stopped = bool(run.done and run.done.get("status") != "completed")
    return {"curve": what, "phases": [asdict(p) for p in phases.segment(steps, values)],
            "verdict": phases.verdict(steps, values, stopped_early=stopped, planned_steps=run.steps_planned)}
