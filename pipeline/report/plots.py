"""Matplotlib (Agg) figures written next to the report as PNG; the template links them relatively.

Titles and axis labels are in the report's language (`_()`: the language's gettext catalog); a non-English
language's files get its suffix (loss.ja.png). Japanese needs a font with CJK glyphs: `cjk_font()` asks
matplotlib's font manager for one (Noto Sans CJK JP from Debian's fonts-noto-cjk, IPAexGothic, …). Without
one the plots keep English labels, one warning is logged and the report says so: never tofu boxes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from pathlib import Path

import numpy as np
from babel.support import NullTranslations

from pipeline.report.i18n import N_, SOURCE_LANGUAGE, suffix, translations
from pipeline.report.loader import Run

log = logging.getLogger(__name__)


@functools.cache
def pyplot():
    """matplotlib.pyplot on the file backend. Imported on the first plot, not with this module: it is ≈ 0.7 s of
    start-up that `make index` (envelope, plot_language) only pays when it draws a comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


ENGLISH = NullTranslations().gettext

# Families with Japanese glyphs, most wanted first, and the font files they come in (for a font installed
# after matplotlib built its font cache).
CJK_FAMILIES = ("Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "Source Han Sans JP", "TakaoGothic")
CJK_FILES = ("NotoSansCJK", "NotoSansJP", "ipaexg", "ipag", "SourceHanSans", "TakaoGothic")
NO_FONT_NOTE = N_("The plots are labelled in English: no font with Japanese glyphs was found (install fonts-noto-cjk).")


@functools.cache
def cjk_font() -> str | None:
    """The first installed family of CJK_FAMILIES, or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    if not any(n in names for n in CJK_FAMILIES):
        for path in font_manager.findSystemFonts():
            if any(key in Path(path).name for key in CJK_FILES):
                with contextlib.suppress(Exception):
                    font_manager.fontManager.addfont(path)
        names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in CJK_FAMILIES if n in names), None)


@functools.cache
def _warn_no_font(lang: str) -> None:
    log.warning("no CJK font found for %s plot labels (apt-get install fonts-noto-cjk); using English labels", lang)


def plot_language(lang: str) -> tuple:
    """(gettext, matplotlib rc settings, note for the report or None) for plots in `lang`."""
    if lang == SOURCE_LANGUAGE:
        return ENGLISH, {}, None
    font = cjk_font()
    if font is None:
        _warn_no_font(lang)
        return ENGLISH, {}, NO_FONT_NOTE
    return translations(lang).gettext, {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"]}, None


# A line of more points than this is drawn as its envelope: 7 inches at 110 dpi are 770 pixel columns, so each
# column still gets a bucket's minimum and maximum, and the picture is the same at a fraction of the cost.
MAX_POINTS = 4000


def envelope(x, y, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) thinned for a line plot: up to `max_points` // 2 equal buckets of consecutive points, each drawn as
    its minimum at its first x and its maximum at its last x (NaN ignored; an all-NaN bucket stays a gap).

    >>> x, y = envelope(np.arange(10), np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3.0]), max_points=4)
    >>> x.tolist(), y.tolist()
    ([0.0, 4.0, 5.0, 9.0], [1.0, 5.0, 2.0, 9.0])
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return x, y
    starts = np.linspace(0, len(x), max_points // 2 + 1).astype(int)[:-1]
    ends = np.append(starts[1:], len(x)) - 1
    with np.errstate(invalid="ignore"):
        low, high = np.fmin.reduceat(y, starts), np.fmax.reduceat(y, starts)
    return np.column_stack([x[starts], x[ends]]).ravel(), np.column_stack([low, high]).ravel()


def save(fig, path: Path) -> str:
    """Write `fig` as PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path.name


def validation_curves(run: Run) -> list[tuple[str | None, object]]:
    """(eval set name or None, rows with a validation loss): one curve per eval set an import holds (`dataset`)."""
    main = run.validation
    name = main["dataset"].dropna().iloc[0] if "dataset" in main and main["dataset"].notna().any() else None
    curves = [(name, main), *run.validation_sets.items()]
    return [(n, f.dropna(subset=["val_loss"])) for n, f in curves if len(f) and f["val_loss"].notna().any()]


def loss_plot(run: Run, out: Path, _=ENGLISH, sfx: str = "") -> str | None:
    plt = pyplot()
    if not len(run.metrics):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*envelope(run.metrics["step"], run.metrics["loss"]), label=_("training loss"), lw=1.2)
    for name, frame in validation_curves(run):
        label = _("validation loss") if name is None else _("validation loss ({name})").format(name=name)
        ax.plot(frame["step"], frame["val_loss"], "o-", label=label, lw=1.5, ms=4)
    for i, seg in enumerate(run.segments[1:]):
        ax.axvline(seg["first_step"], color="grey", ls="--", lw=0.8, label=_("restart") if i == 0 else None)
    ax.set_xlabel(_("optimizer step"))
    ax.set_ylabel(_("cross-entropy loss (nats/token)"))
    ax.set_title(_("{name}: loss").format(name=run.name))
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, out / f"loss{sfx}.png")


def series_plot(
    run: Run, out: Path, column: str, ylabel: str, filename: str, log_y: bool = False, _=ENGLISH
) -> str | None:
    plt = pyplot()
    frame = run.metrics[["step", column]].dropna() if len(run.metrics) else run.metrics
    if not len(frame):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(*envelope(frame["step"], frame[column]), lw=1.2)
    if log_y and (frame[column] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel(_("optimizer step"))
    ax.set_ylabel(ylabel)
    ax.set_title(_("{name}: {what}").format(name=run.name, what=ylabel))
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4)) if not log_y else None
    return save(fig, out / filename)


def bench_bars(run: Run, out: Path, key: str, scale: float, ylabel: str, filename: str, _=ENGLISH) -> str | None:
    plt = pyplot()
    variants = {n: v for n, v in run.bench.variants.items() if v.get("status") == "ok"}
    if not variants:
        return None
    names = list(variants)
    values = [scale * variants[n][key] for n in names]
    errors = [scale * (variants[n].get(f"{key}_std") or 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), values, yerr=errors, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(_("{name}: {what} (mean ± std over repeats)").format(name=run.name, what=ylabel))
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out / filename)


def overlay_plot(base: Run, run: Run, out: Path, lang: str = SOURCE_LANGUAGE) -> str | None:
    plt = pyplot()
    if not len(run.metrics) or not len(base.metrics):
        return None
    _, rc, _note = plot_language(lang)
    with plt.rc_context(rc):
        return _overlay(base, run, out / f"compare_loss{suffix(lang)}.png", _)


def _per_char(r: Run, split: str) -> float | None:
    """Factor from nats/token to bits/character on a split: tokens / (characters · ln 2) of prepared/stats.json."""
    stats = r.prepared.splits.get(split)
    if not stats or not stats.tokens or not stats.characters:
        return None
    return stats.tokens / (stats.characters * math.log(2))


def _overlay(base: Run, run: Run, path: Path, _) -> str | None:
    plt = pyplot()
    from pipeline.report.compare import same_tokenizer

    one_unit = same_tokenizer(base, run)  # else every curve in bits per character: one unit for both tokenizers
    factors = {}
    for r in (base, run):
        factors[r.name] = (1.0, 1.0) if one_unit else (_per_char(r, "train"), _per_char(r, "validation"))
    if any(f is None for pair in factors.values() for f in pair):
        return None  # no honest common unit: no plot
    fig, ax = plt.subplots(figsize=(7, 4))
    for r, colour in ((base, "#999999"), (run, "#4c72b0")):
        f_train, f_val = factors[r.name]
        ax.plot(
            *envelope(r.metrics["step"], r.metrics["loss"] * f_train),
            color=colour,
            lw=1.0,
            alpha=0.7,
            label=_("{name} training").format(name=r.name),
        )
        if len(r.validation):
            ax.plot(
                r.validation["step"],
                r.validation["val_loss"] * f_val,
                "o-",
                color=colour,
                ms=3,
                lw=1.6,
                label=_("{name} validation").format(name=r.name),
            )
    ax.set_xlabel(_("optimizer step"))
    ax.set_ylabel(
        _("cross-entropy loss (nats/token)")
        if one_unit
        else _("bits per character (tokenizers differ; each split's characters per token)")
    )
    ax.set_title(_("{run} vs {baseline}").format(run=run.name, baseline=base.name))
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def make_plots(run: Run, out: Path, lang: str = SOURCE_LANGUAGE) -> tuple[dict[str, str | None], object]:
    """The report's plots in `lang` (file names with its suffix), and the note to print when their labels
    had to stay English."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    _, rc, note = plot_language(lang)
    sfx = suffix(lang)
    mem_label = (
        _("peak process RSS (GiB)")
        if any(v.get("mem_kind") == "cpu_peak_rss" for v in run.bench.variants.values())
        else _("peak GPU memory allocated (GiB)")
    )
    with plt.rc_context(rc):
        files = {
            "bench_time": bench_bars(
                run, out, "step_time_median_s", 1e3, _("step time (ms)"), f"bench_time{sfx}.png", _
            ),
            "bench_mem": bench_bars(run, out, "mem_peak_allocated_gib", 1.0, mem_label, f"bench_memory{sfx}.png", _),
            "loss": loss_plot(run, out, _, sfx),
            "lr": series_plot(run, out, "lr", _("learning rate"), f"lr{sfx}.png", _=_),
            "grad_norm": series_plot(
                run, out, "grad_norm", _("gradient norm (before clipping)"), f"grad_norm{sfx}.png", log_y=True, _=_
            ),
            "tokens_per_s": series_plot(
                run, out, "tokens_per_s", _("tokens/s (as logged)"), f"tokens_per_s{sfx}.png", _=_
            )
            if run.imported
            else None,
        }
    return files, (note if any(files.values()) else None)
