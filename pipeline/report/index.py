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
from pipeline.report import compare, summary, tables
from pipeline.report.aggregate import (
    aggregate_checks,
    is_aggregate,
    load_members,
    matching_member,
    member_values,
    points_of,
    runs_root,
)
from pipeline.report.i18n import N_, SOURCE_LANGUAGE, STATUS, Msg, suffix
from pipeline.report.loader import Run, load_run
from pipeline.report.plots import envelope, plot_language, pyplot, save
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
        "checks": checks_column(s),
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


def checks_column(s: records.Summary) -> Msg:
    """The index's checks column: the worst severity and how many findings have it (the report's own checks,
    with its `compare_to` baseline when that run exists)."""
    if s.n_errors:
        return N_("❌ {n} error(s)", n=s.n_errors)
    if s.n_warnings:
        return N_("⚠️ {n} warning(s)", n=s.n_warnings)
    return N_("✅ none")


def aggregate_row(exp_runs_dir: Path, reports: Path, lang: str = SOURCE_LANGUAGE) -> dict:
    """The index row of an experiment with several members: seeds as means over them, a sweep as its size; the
    status counts completed members, the checks column is the aggregate report's own checks; linked to
    `reports/<EXP>/report.md`."""
    members, results = load_members(exp_runs_dir, reports / exp_runs_dir.name)
    ok = [r for r in results if r.ok]
    points = points_of(results)
    findings = aggregate_checks(results, points)
    report = reports / exp_runs_dir.name / f"report{suffix(lang)}.md"
    if not report.is_file():
        report = reports / exp_runs_dir.name / "report.md"
    row = run_row(ok[0].run, reports, reports, lang) if ok else {}
    if len(points) == 1 and ok:
        row = seeds_row(row, compare.SeedGroup(exp_runs_dir.name, [r.run for r in ok]))
    elif len(points) > 1:
        row.update(
            experiment=N_("{name} (sweep: {n} points)", name=exp_runs_dir.name, n=len(points)),
            best_val_ppl=None, best_val_acc=None, test_ppl=None, train_s=None, steps="—",
        )  # fmt: skip
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    return {
        **row,
        "experiment": row.get("experiment", exp_runs_dir.name),
        "status": STATUS["completed"]
        if len(ok) == len(results)
        else N_("{ok} of {total} members completed", ok=len(ok), total=len(results)),
        "checks": N_("❌ {n} error(s)", n=errors)
        if errors
        else N_("⚠️ {n} warning(s)", n=warnings)
        if warnings
        else N_("✅ none"),
        "link": f"{exp_runs_dir.name}/{report.name}" if report.is_file() else None,
    }


def seeds_row(row: dict, group: compare.SeedGroup) -> dict:
    """A seeds experiment's row: its name with the number of seeds, the metrics as means over them."""
    if len(group.runs) < 2:
        return row
    values = [member_values(r) for r in group.runs]

    def mean(key):
        got = [v[key] for v in values if v.get(key) is not None]
        return sum(got) / len(got) if got else None

    accuracy = [(tables.best_validation(r) or {}).get("val_accuracy") for r in group.runs]
    accuracy = [a for a in accuracy if a is not None]
    return {
        **row,
        "experiment": N_("{name} (mean of {n} seeds)", name=group.name, n=len(group.runs)),
        "best_val_ppl": mean("best_val_ppl"),
        "best_val_acc": sum(accuracy) / len(accuracy) if accuracy else None,
        "test_ppl": mean("test_ppl"),
        "train_s": mean("train_time_s"),
    }


def worst_finding(run: Run) -> Msg:
    """The index's checks column: the worst severity and how many findings have it (the report's own checks,
    with its `compare_to` baseline when that run exists)."""
    from pipeline.report.checks import RULES, applicable, run_checks

    base_name = (run.config.get("report") or {}).get("compare_to")
    base_dir = runs_root(run) / base_name if base_name else None
    if base_dir is not None and is_aggregate(base_dir):
        base_dir = matching_member(base_dir, (run.config.get("train") or {}).get("seed"))
    baseline = load_run(base_dir) if base_dir and (base_dir / "config.yaml").is_file() else None
    findings = run_checks(run, applicable(RULES, baseline), baseline=baseline)
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    if errors:
        return N_("❌ {n} error(s)", n=errors)
    if warnings:
        return N_("⚠️ {n} warning(s)", n=warnings)
    return N_("✅ none")


def run_row(run: Run, reports: Path, link_from: Path, lang: str = SOURCE_LANGUAGE) -> dict:
    """`summary_row` of a loaded run (an aggregate's member); its checks as `worst_finding` counts them."""
    row = summary_row(records.Summary.model_validate(summary.summarise(run, None)), reports, link_from, lang)
    return {**row, "checks": worst_finding(run)}


def run_dirs(runs: Path, names: list[str] | None = None) -> list[Path]:
    if names:  # a run, or an experiment with several seeds (members.json, pipeline/report/aggregate.py)
        missing = [n for n in names if not (runs / n / "config.yaml").is_file() and not is_aggregate(runs / n)]
        if missing:
            raise UserError(f"EXPS: no run directory for {', '.join(missing)} (run `make report EXP=…` first)")
        return [runs / n for n in names]
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if (p / "config.yaml").is_file() or is_aggregate(p))


def build_index(runs: Path = Path("runs"), reports: Path = Path("reports"), lang: str = SOURCE_LANGUAGE) -> Path:
    rows = [
        aggregate_row(d, reports, lang) if is_aggregate(d) else summary_row(summary.current(d), reports, reports, lang)
        for d in run_dirs(runs)
    ]
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
    groups = [compare.seed_group(d, reports / d.name) for d in run_dirs(runs, names)]
    for group in groups:
        if not group.runs:
            raise UserError(f"EXPS: {group.name} has no completed member run yet (see runs/{group.name}/members.json)")
    loaded = [g.runs[0] for g in groups]  # a seeds experiment: its first member stands for config and environment
    out_dir = reports / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [seeds_row(run_row(g.runs[0], reports, out_dir, lang), g) for g in groups]
    base = rows[0]
    for row in rows:
        row["params_ratio"] = row["params"] / base["params"] if row["params"] and base["params"] else None
        row["batch_ratio"] = row["batch"] / base["batch"] if row["batch"] and base["batch"] else None
    diffs = {g.name: compare.config_diff(loaded[0].config, g.runs[0].config) for g in groups[1:]}
    guards = {g.name: compare.guards(loaded[0], g.runs[0]) for g in groups[1:]}
    seeds = {g.name: compare.seed_comparison(groups[0], g) for g in groups[1:]}
    plot = overlay(loaded, out_dir / f"{title}{suffix(lang)}.png", lang)
    text = (
        environment(TEMPLATES, lang)
        .get_template("compare.md.j2")
        .render(title=title, rows=rows, baseline=groups[0].name, diffs=diffs, guards=guards, plot=plot, seeds=seeds)
    )
    out = out_dir / f"{title}{suffix(lang)}.md"
    write_text(out, text)
    return out


def overlay(loaded: list[Run], path: Path, lang: str = SOURCE_LANGUAGE) -> str | None:
    if not any(len(r.validation) or len(r.metrics) for r in loaded):
        return None
    _, rc, _note = plot_language(lang)
    with pyplot().rc_context(rc):
        return _overlay(loaded, path, _)


def _overlay(loaded: list[Run], path: Path, _) -> str:
    fig, ax = pyplot().subplots(figsize=(7, 4))
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
    return save(fig, path)
