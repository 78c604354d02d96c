"""Display tables: pick, thin and derive columns from the loader's frames. No formatting here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.report.i18n import N_, STATUS
from pipeline.report.loader import Run

if TYPE_CHECKING:
    import pandas as pd

# pandas only where a frame is built (see loader.py: the index imports this module without reading frames).


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


# Columns of an imported run's training table, shown only when the source recorded them.
IMPORTED_COLUMNS = [
    "step",
    "segment",
    "loss",
    "grad_norm",
    "lr",
    "tokens",
    "tokens_per_s",
    "step_time_s",
    "data_time_s",
    "flops_per_s",
    "mem_peak_gib",
    "mem_peak_pct",
    "power_w",
]


def recorded_columns(run: Run) -> list[str]:
    cols = [c for c in IMPORTED_COLUMNS if c in run.metrics and run.metrics[c].notna().any()]
    return [c for c in cols if c != "segment" or len(run.segments) > 1]


def imported_training(run: Run, max_rows: int) -> pd.DataFrame:
    shown = thin(run.metrics, max_rows)[recorded_columns(run)].copy()
    if "segment" in shown:
        shown["segment"] = shown["segment"] + 1  # numbered from 1, as in the segments table
    return shown


def median_of(run: Run, column: str) -> float | None:
    """Median over the steady steps (first row after each start excluded), for summary lines."""
    if column not in run.metrics:
        return None
    values = run.metrics[column][_steady(run)].dropna()
    return float(values.median()) if len(values) else None


def validation_table(run: Run, max_rows: int) -> pd.DataFrame:
    return validation_table_of(run.validation, max_rows)


def validation_table_of(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    return thin(frame, max_rows)[["step", "val_loss", "val_perplexity", "val_accuracy"]]


def throughput(run: Run) -> dict:
    """Median/min/max tokens/s without the first logged interval after each start or resume: it includes
    start-up, compilation and warm-up (seed 000's wps range was stretched by a 2.16e4 first step)."""
    frame = run.metrics
    if not len(frame) or frame["tokens_per_s"].isna().all():
        return {}
    wanted = [c for c in ("tokens_per_s", "step_time_s", "interval_event") if c in frame]
    steady = frame.loc[_steady(run), wanted]  # only the columns used: a 1M-row log's whole frame is ≈ 150 MB
    if "interval_event" in steady:  # an interval holding an evaluation/checkpoint is that pause, not the speed
        steady = steady[steady["interval_event"].isna()]
    tps = steady["tokens_per_s"].dropna()
    if not len(tps):
        return {}
    return {
        "median": float(tps.median()),
        "min": float(tps.min()),
        "max": float(tps.max()),
        "step_time_s": float(steady["step_time_s"].median()),
        "excluded_steps": sorted(_first_steps(run)),
        "rows": len(tps),
    }


def _first_steps(run: Run) -> set[int]:
    if run.segments:
        return {s["first_step"] for s in run.segments}
    return {int(run.metrics["step"].iloc[0])} if len(run.metrics) else set()


def _steady(run: Run) -> pd.Series:
    """Which metric rows are steady: every row but those at a segment's first step."""
    return ~run.metrics["step"].isin(_first_steps(run))


def best_validation(run: Run) -> dict | None:
    val = run.validation.dropna(subset=["val_loss"])
    if not len(val):
        return None
    return val.loc[val["val_loss"].idxmin()].to_dict()


def harness_table(run: Run) -> pd.DataFrame:
    """One row per (task, metric), stderr next to the value, chance where it is defined."""
    import pandas as pd

    frame = run.harness.copy()
    if "is_group" in frame:  # lm-eval groups are shown as groups (harness_groups), never as tasks
        frame = frame[frame["is_group"] != True]  # noqa: E712 - a column of True/None
    if not len(frame):
        return frame
    frame["n_shown"] = frame.apply(
        lambda r: (
            None
            if pd.isna(r.n)
            else f"{int(r.n):,}"
            if r.n == r.n_original
            else N_("{n:,} of {total:,}", n=int(r.n), total=int(r.n_original))
            if pd.notna(r.n_original)
            else f"{int(r.n):,}"
        ),
        axis=1,
    )
    return frame.sort_values(["task", "metric"])


def harness_groups(run: Run) -> list[dict]:
    """lm-eval groups: their own aggregate score (where lm-eval wrote one) and how many subtasks they hold."""
    frame = run.harness
    if "is_group" not in frame or not (frame["is_group"] == True).any():  # noqa: E712
        return []
    groups = frame[frame["is_group"] == True]  # noqa: E712
    subtasks = frame[frame["is_group"] != True].groupby("group")["task"].nunique()  # noqa: E712
    nested = groups.groupby("group")["task"].nunique() if "group" in groups else {}
    return [
        {
            "group": r.task,
            "parent": r.group if isinstance(r.group, str) else None,
            "metric": r.metric,
            "value": r.value,
            "stderr": r.stderr,
            "subtasks": int(subtasks.get(r.task, 0)) + int(nested.get(r.task, 0) if len(nested) else 0),
        }
        for r in groups.sort_values(["task", "metric"]).itertuples()
    ]


def samples_table(timing) -> list[dict]:
    """An import's per-sample files (lm-eval `--log_samples`): items per task and metric, and how many scored
    above 0 (the results file's mean is over the same items)."""
    return [
        {
            "task": task,
            "metric": key.partition(",")[0],
            "filter": key.partition(",")[2] or None,
            "items": c.get("items"),
            "above_zero": c.get("above_zero"),
        }
        for task, metrics in sorted((timing.samples or {}).items() if timing else [])
        for key, c in sorted(metrics.items())
    ]


def validation_sets(run: Run, max_rows: int) -> list[dict]:
    """One table per further eval set (imports with several eval datasets)."""
    return [{"name": name, "rows": validation_table_of(frame, max_rows)} for name, frame in run.validation_sets.items()]


def harness_timing_rows(timing) -> list[dict]:
    if not timing:
        return []
    rows = [{"kind": kind, **v.model_dump()} for kind, v in timing.requests.items() if v.requests]
    total = timing.total_s or 0
    for row in rows:
        row["share"] = 100 * row["seconds"] / total if total else None
    return rows


def bench_table(run: Run) -> list[dict]:
    """One row per variant; ratios against the baseline (time ratio < 1 = faster)."""
    summary = run.bench
    variants, base = summary.variants, summary.baseline
    b = variants.get(base, {})
    rows = []
    for name, v in variants.items():
        row = {**v, "variant": N_("{name} (baseline)", name=name) if name == base else name}
        if v["status"] == "ok":
            row["step_ms"] = 1e3 * v["step_time_median_s"]
            row["step_ms_std"] = 1e3 * v["step_time_median_s_std"]
            n = v.get("ok") or summary.repeats
            if n and n >= 2 and v["step_time_median_s_std"] is not None:  # Student t, n - 1 degrees of freedom
                from scipy import stats as sps

                row["step_ms_ci"] = float(sps.t.ppf(0.975, n - 1)) * row["step_ms_std"] / n**0.5
            row["p90_ms"] = 1e3 * v["step_time_p90_s"]
            if b.get("status") == "ok":
                row["time_ratio"] = v["step_time_median_s"] / b["step_time_median_s"]
                row["mem_ratio"] = (
                    v["mem_peak_allocated_gib"] / b["mem_peak_allocated_gib"]
                    if b.get("mem_peak_allocated_gib")
                    else None
                )
            row["setting"] = ", ".join(
                f"{k}={val}" for k, val in v["requested"].items() if summary.fixed.get(k) != val
            ) or N_("fixed conditions")
        rows.append(row)
    return rows


def bench_not_ok(run: Run) -> list[dict]:
    variants = run.bench.variants
    return [
        {"variant": n, "status": STATUS.get(v["status"], v["status"]), "why": "; ".join(v["errors"])}
        for n, v in variants.items()
        if v["status"] != "ok"
    ]


def curve_phases(run: Run) -> dict:
    """Phases of the validation curve (or, with fewer than 6 passes, of the median-smoothed training loss)."""
    from dataclasses import asdict

    from pipeline.report import phases

    if len(run.validation.dropna(subset=["val_loss"])) >= 6:
        steps, values, what = run.validation["step"], run.validation["val_loss"], N_("validation loss")
    elif len(run.metrics) >= 6:
        window = max(3, len(run.metrics) // 20)
        steps, values = run.metrics["step"], phases.smooth(run.metrics["loss"].to_numpy(dtype=float), window)
        what = N_("training loss (rolling median of {window} log steps)", window=window)
    else:
        return {}
    # "early-stopped" only where the source says an early-stopping rule ended the run (not any partial import)
    stopped = run.done.status == "early_stopped"
    verdict = phases.verdict(steps, values, stopped_early=stopped, planned_steps=run.steps_planned)
    val = run.validation.dropna(subset=["val_loss"])
    if 3 <= len(val) < 6:  # the phases follow the training loss, but how the run ends is the validation's to say
        verdict = N_("{verdict} (judged on the {n} validation passes)", n=len(val), verdict=phases.verdict(
            val["step"], val["val_loss"], stopped_early=stopped, planned_steps=run.steps_planned))  # fmt: skip
    return {"curve": what, "phases": [asdict(p) for p in phases.segment(steps, values)], "verdict": verdict}


def train_time(run: Run) -> dict:
    """Training time over every launch on the current train inputs (a resumed run has several), how many launches,
    and the time lost to restarts: steps trained past the last checkpoint before a kill, at the median step time."""
    entry = run.provenance.stages.get("train")
    if not entry:
        return {}
    stamp = run.root / "stamps" / "train.sha256"
    current = stamp.read_text().strip() if stamp.is_file() else None
    launches = [launch for launch in entry.launches if launch.stage_hash in (None, current)]
    if not launches:
        return {"total_s": entry.duration_s, "launches": 1, "lost_s": None, "lost_steps": 0, "unknown": 0}
    lost_steps = sum(launch.steps_lost or 0 for launch in launches)
    step_time = median_of(run, "step_time_s")
    return {
        "total_s": sum(launch.duration_s or 0.0 for launch in launches),
        "launches": len(launches),
        "unknown": sum(launch.duration_s is None and launch is not launches[-1] for launch in launches),
        "lost_steps": lost_steps,
        "lost_s": lost_steps * step_time if step_time is not None else None,
    }
