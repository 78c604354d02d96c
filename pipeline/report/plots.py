"""Matplotlib (Agg) figures written next to the report as PNG; the template links them relatively."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from pipeline.report.loader import Run  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def loss_plot(run: Run, out: Path) -> str | None:
    if not len(run.metrics):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(run.metrics["step"], run.metrics["loss"], label="training loss", lw=1.2)
    if len(run.validation):
        ax.plot(run.validation["step"], run.validation["val_loss"], "o-", label="validation loss", lw=1.5, ms=4)
    for i, seg in enumerate(run.segments[1:]):
        ax.axvline(seg["first_step"], color="grey", ls="--", lw=0.8, label="restart" if i == 0 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(f"{run.name}: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out / "loss.png")


def series_plot(run: Run, out: Path, column: str, ylabel: str, filename: str, log_y: bool = False) -> str | None:
    frame = run.metrics.dropna(subset=[column]) if len(run.metrics) else run.metrics
    if not len(frame):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(frame["step"], frame[column], lw=1.2)
    if log_y and (frame[column] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{run.name}: {ylabel}")
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4)) if not log_y else None
    return _save(fig, out / filename)


def bench_bars(run: Run, out: Path, key: str, scale: float, ylabel: str, filename: str) -> str | None:
    variants = {n: v for n, v in ((run.bench or {}).get("variants") or {}).items() if v.get("status") == "ok"}
    if not variants:
        return None
    names = list(variants)
    values = [scale * variants[n][key] for n in names]
    errors = [scale * (variants[n].get(f"{key}_std") or 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), values, yerr=errors, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{run.name}: {ylabel} (mean ± std over repeats)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out / filename)


def overlay_plot(base: Run, run: Run, out: Path) -> str | None:
    if not len(run.metrics) or not len(base.metrics):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for r, colour in ((base, "#999999"), (run, "#4c72b0")):
        ax.plot(r.metrics["step"], r.metrics["loss"], color=colour, lw=1.0, alpha=0.7, label=f"{r.name} training")
        if len(r.validation):
            ax.plot(
                r.validation["step"],
                r.validation["val_loss"],
                "o-",
                color=colour,
                ms=3,
                lw=1.6,
                label=f"{r.name} validation",
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(f"{run.name} vs {base.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out / "compare_loss.png")


def make_plots(run: Run, out: Path) -> dict[str, str | None]:
    out.mkdir(parents=True, exist_ok=True)
    mem_label = (
        "peak process RSS (GiB)"
        if any(v.get("mem_kind") == "cpu_peak_rss" for v in ((run.bench or {}).get("variants") or {}).values())
        else "peak GPU memory allocated (GiB)"
    )
    return {
        "bench_time": bench_bars(run, out, "step_time_median_s", 1e3, "step time (ms)", "bench_time.png"),
        "bench_mem": bench_bars(run, out, "mem_peak_allocated_gib", 1.0, mem_label, "bench_memory.png"),
        "loss": loss_plot(run, out),
        "lr": series_plot(run, out, "lr", "learning rate", "lr.png"),
        "grad_norm": series_plot(run, out, "grad_norm", "gradient norm (before clipping)", "grad_norm.png", log_y=True),
        "tokens_per_s": series_plot(run, out, "tokens_per_s", "tokens/s (as logged)", "tokens_per_s.png")
        if run.imported
        else None,
    }
