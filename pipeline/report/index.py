"""`make index` and `make compare`: tables across runs, rendered from their run directories only.

- index: `reports/README.md`, one row per run in `runs/` (status, date, commit, key metrics, link);
- compare: `reports/compare/<name>.md`, the "past experiments" table of several runs (environment, batch,
  learning rate, best perplexity and accuracy, time, device), shape ratios against the first run, and the
  runs' loss curves overlaid.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import records
from pipeline.atomic import write_text
from pipeline.errors import UserError
from pipeline.report import compare, summary
from pipeline.report.i18n import N_, SOURCE_LANGUAGE, STATUS, Msg, suffix
from pipeline.report.loader import Run, load_run
from pipeline.report.plots import envelope, plot_language
from pipeline.report.render import TEMPLATES, environment


def summary_row(summary: records.Summary, reports: Path, link_from: Path, lang: str = SOURCE_LANGUAGE) -> dict:
    """One row of the index or a comparison, from the run's summary (pipeline/report/summary.py)."""
    s = summary
    report = reports / s.name / f"report{suffix(lang)}.md"
    if not report.is_file():  # no report in this language: link the English one
        report = reports / s.name / "report.md"
    return {
        "experiment": s.name,
        "status": STATUS.get(s.status, s.status),
        "checks": worst_finding(s),
        "steps": f"{s.steps_done}/{s.steps_planned or '—'}" if s.has_train else "—",
        "date": s.ended_utc[:16].replace("T", " ") if s.ended_utc else None,
        "commit": str(s.commit or "—")[:10],
        "device": s.device,
        "params": s.params,
        "shape": s.shape,
        "batch": s.batch,
        "lr": s.lr,
        "best_val_ppl": s.best_val_ppl,
        "best_val_acc": s.best_val_acc,
        "test_ppl": s.test_ppl,
        "train_s": s.train_s,
        "link": str(Path("..") / report.relative_to(reports.parent))
        if report.is_file() and link_from != reports
        else (f"{s.name}/{report.name}" if report.is_file() else None),
    }


def worst_finding(s: records.Summary) -> Msg:
    """The index's checks column: the worst severity and how many findings have it (the report's own checks,
    with its `compare_to` baseline when that run exists)."""
    if s.n_errors:
        return N_("❌ {n} error(s)", n=s.n_errors)
    if s.n_warnings:
        return N_("⚠️ {n} warning(s)", n=s.n_warnings)
    return N_("✅ none")


def run_dirs(runs: Path, names: list[str] | None = None) -> list[Path]:
    if names:
        missing = [n for n in names if not (runs / n / "config.yaml").is_file()]
        if missing:
            raise UserError(f"EXPS: no run directory for {', '.join(missing)} (run `make report EXP=…` first)")
        return [runs / n for n in names]
    return sorted(p for p in runs.iterdir() if (p / "config.yaml").is_file()) if runs.is_dir() else []


def build_index(runs: Path = Path("runs"), reports: Path = Path("reports"), lang: str = SOURCE_LANGUAGE) -> Path:
    rows = [summary_row(summary.current(d), reports, reports, lang) for d in run_dirs(runs)]
    text = environment(TEMPLATES, lang).get_template("index.md.j2").render(rows=rows)
    out = reports / f"README{suffix(lang)}.md"
    write_text(out, text)
    return out


def build_compare(
    names: list[str],
    title: str,
    runs: Path = Path("runs"),
    reports: Path = Path("reports"),
    lang: str = SOURCE_LANGUAGE,
) -> Path:
    if len(names) < 2:
        raise UserError('EXPS: name at least two experiments, e.g. EXPS="smoke smoke_lr"')
    dirs = run_dirs(runs, names)
    loaded = [load_run(d) for d in dirs]
    out_dir = reports / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [summary_row(summary.current(d), reports, out_dir, lang) for d in dirs]
    base = rows[0]
    for row in rows:
        row["params_ratio"] = row["params"] / base["params"] if row["params"] and base["params"] else None
        row["batch_ratio"] = row["batch"] / base["batch"] if row["batch"] and base["batch"] else None
    diffs = {r.name: compare.config_diff(loaded[0].config, r.config) for r in loaded[1:]}
    guards = {r.name: compare.guards(loaded[0], r) for r in loaded[1:]}
    plot = overlay(loaded, out_dir / f"{title}{suffix(lang)}.png", lang)
    text = (
        environment(TEMPLATES, lang)
        .get_template("compare.md.j2")
        .render(title=title, rows=rows, baseline=loaded[0].name, diffs=diffs, guards=guards, plot=plot)
    )
    out = out_dir / f"{title}{suffix(lang)}.md"
    write_text(out, text)
    return out


def overlay(loaded: list[Run], path: Path, lang: str = SOURCE_LANGUAGE) -> str | None:
    if not any(len(r.validation) or len(r.metrics) for r in loaded):
        return None
    import matplotlib.pyplot as plt

    _, rc, _note = plot_language(lang)
    with plt.rc_context(rc):
        return _overlay(loaded, path, _)


def _overlay(loaded: list[Run], path: Path, _) -> str:
    import matplotlib.pyplot as plt  # only a comparison draws: `make index` starts without matplotlib

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in loaded:
        frame, col = (r.validation, "val_loss") if len(r.validation) else (r.metrics, "loss")
        ax.plot(
            *envelope(frame["step"], frame[col]),
            "o-",
            ms=3,
            label=(_("{name} (validation)") if col == "val_loss" else _("{name} (training)")).format(name=r.name),
        )
    ax.set_xlabel(_("optimizer step"))
    ax.set_ylabel(_("loss (nats/token)"))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
