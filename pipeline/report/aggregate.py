"""Seeds and sweeps: one report over the member runs of an experiment (`runs/<EXP>/members.json`).

Each member is a complete, normal run (`runs/<EXP>/seed-<n>/`, `runs/<EXP>/<point>/`, `runs/<EXP>/<point>/seed-<n>/`)
with its own report; this module reads them back and writes `reports/<EXP>/report.md`:

- seeds (one point): every headline metric as mean ± 95% CI (Student t, n stated) with the per-seed values, the
  learning curves as the mean with a min–max band, each seed's own report linked;
- sweeps (several points): a row per point (its values, best validation loss ± CI, final training loss, tokens/s,
  wall time, status), the best point and every point Welch's t test cannot tell from it (p ≥ 0.05), and the
  metric against each swept key;
- a member that failed or never ran is a row with its status and error; the others still report;
- `report.compare_to`: the per-seed finals of both experiments by Welch's t test (pipeline/report/compare.py
  `seed_comparison`).

Numbers come from pipeline/report/stats.py (`t_interval`, `welch`); nothing here formats them (templates do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import records
from pipeline.atomic import write_text
from pipeline.errors import UserError
from pipeline.records import Member, Members, MemberStatus
from pipeline.report import stats, tables
from pipeline.report.checks import SEVERITY_ORDER, Finding
from pipeline.report.i18n import N_, SOURCE_LANGUAGE, STATUS, Msg, suffix
from pipeline.report.loader import Run, load_run
from pipeline.report.plots import plot_language, pyplot, save
from pipeline.report.render import TEMPLATES, environment

if TYPE_CHECKING:
    import pandas as pd

# pandas and matplotlib only where a frame or a figure is built (see loader.py and plots.pyplot: `make index`
# imports this module for its row helpers).

# members.json and member.json are declared in pipeline/records.py (written by the orchestration, pipeline/sweep.py).
MEMBERS, MEMBER_STATUS = records.MEMBERS, records.MEMBER_STATUS


def is_aggregate(exp_runs_dir: Path) -> bool:
    return MEMBERS.at(exp_runs_dir).is_file()


def runs_root(run: Run) -> Path:
    """The folder holding experiments' run directories (`runs/`): a member run lies one or two levels below its
    experiment's folder (`runs/<EXP>/seed-<n>/`), whose name its config keeps."""
    root = Path(run.root)
    for parent in list(root.parents)[:3]:
        if parent.name == run.name and is_aggregate(parent):
            return parent.parent
    return root.parent


def matching_member(exp_runs_dir: Path, seed: int | None) -> Path | None:
    """The member of a seeds experiment with `seed`, else its first member with a run directory; None for a sweep
    (its points differ in more than the seed) or when no member has run."""
    members = MEMBERS.read(exp_runs_dir)
    if members.swept_keys:
        return None
    dirs = [(m.seed, exp_runs_dir / (m.run_dir or m.name)) for m in members.members]
    dirs = [(s, d) for s, d in dirs if (d / "config.yaml").is_file()]
    return next((d for s, d in dirs if s == seed), dirs[0][1] if dirs else None)


# --------------------------------------------------------------------------- one member, read
# The headline metrics of a member: key -> (label, higher is better, format spec of the tables).
HEADLINE = {
    "best_val_loss": (N_("best validation loss"), False, ".4f"),
    "final_val_loss": (N_("final validation loss"), False, ".4f"),
    "best_val_ppl": (N_("best validation perplexity"), False, ",.2f"),
    "final_train_loss": (N_("final training loss"), False, ".4f"),
    "test_ppl": (N_("held-out perplexity"), False, ",.2f"),
    "tokens_per_s": (N_("throughput, median tokens/s"), True, ",.0f"),
    "train_time_s": (N_("training wall time (s)"), False, ",.1f"),
}
SWEEP_METRIC = "best_val_loss"  # what the sweep ranks points by (lower is better)
STATUS_WORDS = {**STATUS, "not run": N_("not run")}


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def member_values(run: Run) -> dict[str, float | None]:
    """The headline numbers of one run (None where it has none)."""
    val = run.validation.dropna(subset=["val_loss"]) if len(run.validation) else run.validation
    loss = run.metrics["loss"].dropna() if len(run.metrics) else []
    best = tables.best_validation(run) or {}
    return {
        "best_val_loss": _number(best.get("val_loss")),
        "final_val_loss": _number(float(val["val_loss"].iloc[-1])) if len(val) else None,
        "best_val_ppl": _number(float(val["val_perplexity"].min())) if len(val) else None,
        "final_train_loss": _number(float(loss.iloc[-1])) if len(loss) else None,
        "test_ppl": _number(run.perplexity.perplexity),
        "tokens_per_s": _number(tables.throughput(run).get("median")),
        "train_time_s": _number(tables.train_time(run).get("total_s")),
    }


def harness_values(run: Run) -> dict[tuple, dict]:
    """(task, metric, filter) -> {value, higher_is_better} for every lm-eval score of a run (groups left out)."""
    frame = tables.harness_table(run)
    out = {}
    for r in frame.itertuples() if len(frame) else []:
        hib = r.higher_is_better
        out[(r.task, r.metric, r.filter)] = {
            "value": _number(r.value),
            "higher_is_better": bool(hib) if hib == hib and hib is not None else True,
        }
    return out


def harness_label(key: tuple) -> str:
    task, metric, filt = key
    return f"{task} {metric}" + (f" ({filt})" if filt and filt != "none" else "")


@dataclass
class MemberResult:
    member: Member
    run: Run | None
    status: str
    error: str | None
    values: dict = field(default_factory=dict)
    harness: dict = field(default_factory=dict)
    link: str | None = None  # the member's own report, relative to reports/<EXP>/

    @property
    def ok(self) -> bool:
        return self.status == "completed"


def _error_of(outcome: MemberStatus, run: Run | None, status: str) -> str | None:
    if outcome.error:
        return outcome.error
    if outcome.status == "failed":
        return f"exit code {outcome.exit_code}" + (f", see {outcome.log}" if outcome.log else "")
    if run is None:
        return None
    if run.done.status == "stopped_nonfinite":
        return f"training stopped at step {run.done.steps_done}: non-finite loss"
    if status == "partial":
        return f"{run.steps_done} of {run.steps_planned} steps ran"
    return None


def read_member(exp_runs_dir: Path, reports_dir: Path, member: Member) -> MemberResult:
    """A member's run (partial outputs of a failed member read as usual) and its outcome: `member.json` says failed
    whatever the files say; without `member.json` and without files the member has not run."""
    rel = member.run_dir or member.name
    run_dir = exp_runs_dir / rel
    problems: list[str] = []
    outcome = MEMBER_STATUS.read(run_dir, problems)
    run = load_run(run_dir) if (run_dir / "config.yaml").is_file() else None
    if outcome.status == "failed":
        status = "failed"
    elif run is not None and run.status != "not started":
        status = run.status
    else:
        status = "not run"
    report = reports_dir / rel / "report.md"
    return MemberResult(
        member=member,
        run=run,
        status=status,
        error=_error_of(outcome, run, status) or (problems[0] if problems else None),
        values=member_values(run) if run is not None else {},
        harness=harness_values(run) if run is not None else {},
        link=f"{Path(rel).as_posix()}/report.md" if report.is_file() else None,
    )


# --------------------------------------------------------------------------- points and their statistics
@dataclass
class Point:
    name: str  # "lr=3e-3,bs=16"; the experiment's name when there is no sweep
    values: dict  # dotted key -> value
    members: list[MemberResult]

    @property
    def ok(self) -> list[MemberResult]:
        return [m for m in self.members if m.ok]

    def values_of(self, key: str) -> list[float]:
        return [v for m in self.ok if (v := m.values.get(key)) is not None]


def _point_name(member: Member) -> str:
    if member.point_name:
        return member.point_name
    parts = [p for p in Path(member.run_dir or member.name or "").parts if not p.startswith("seed-")]
    return "/".join(parts)


def points_of(results: list[MemberResult]) -> list[Point]:
    """Members grouped by their point, in the order members.json lists them."""
    out: dict[str, Point] = {}
    for r in results:
        name = _point_name(r.member)
        out.setdefault(name, Point(name, dict(r.member.point), [])).members.append(r)
    return list(out.values())


def summary(values: list[float]) -> dict:
    """n, mean, Student-t 95% CI (None below 2 values), and the values themselves."""
    ci = stats.t_interval(values)
    mean = float(np.mean(values)) if values else None
    return {
        "n": len(values),
        "mean": mean,
        "low": ci[1] if ci else None,
        "high": ci[2] if ci else None,
        "half": (ci[2] - ci[0]) if ci else None,
        "values": values,
    }


def headline_rows(point: Point) -> list[dict]:
    """One row per headline metric and lm-eval score: n, mean, 95% CI, the per-seed values."""
    rows = []
    for key, (label, _hib, spec) in HEADLINE.items():
        s = summary(point.values_of(key))
        if s["n"]:
            rows.append({"metric": label, "spec": spec, **s, "per_seed": _per_seed(point, key, spec)})
    keys = sorted({k for m in point.ok for k in m.harness}, key=str)
    for key in keys:
        values = [v for m in point.ok if (v := (m.harness.get(key) or {}).get("value")) is not None]
        if values:
            rows.append({"metric": harness_label(key), "spec": ".4f", **summary(values),
                         "per_seed": _per_seed(point, key, ".4f", harness=True)})  # fmt: skip
    return rows


def _per_seed(point: Point, key, spec: str, harness: bool = False) -> list[dict]:
    parts = []
    for m in point.ok:
        value = (m.harness.get(key) or {}).get("value") if harness else m.values.get(key)
        if value is not None:
            parts.append({"seed": _seed_label(m), "value": value})
    return parts


def _seed_label(m: MemberResult) -> str:
    return f"seed {m.member.seed}" if m.member.seed is not None else (m.member.name or "?")


def member_rows(results: list[MemberResult]) -> list[dict]:
    """Every member: its status (failed ones with their error), key numbers and report link."""
    return [
        {
            "member": r.member.name or r.member.run_dir,
            "seed": r.member.seed,
            "status": STATUS_WORDS.get(r.status, r.status),
            "error": r.error,
            **r.values,
            "link": f"[{r.link}]({r.link})" if r.link else None,
        }
        for r in results
    ]


@dataclass(frozen=True)
class Ranking:
    best: str | None  # the best point's name
    tied: list[str]  # points Welch's test cannot tell from the best (p ≥ 0.05), the best excluded
    decidable: bool  # False when a point that matters has fewer than 2 seeds
    tests: dict  # point name -> stats.Test against the best (None for the best itself or n < 2)


def rank(points: list[Point], key: str = SWEEP_METRIC) -> Ranking:
    """The point with the lowest mean `key`, and the points statistically indistinguishable from it: Welch's t test
    of their per-seed values against the best point's, p ≥ 0.05 (stats.ALPHA)."""
    scored = [(p, p.values_of(key)) for p in points]
    scored = [(p, v) for p, v in scored if v]
    if not scored:
        return Ranking(None, [], False, {})
    best, best_values = min(scored, key=lambda pv: float(np.mean(pv[1])))
    tests, tied, decidable = {}, [], len(best_values) >= 2
    for p, values in scored:
        if p is best:
            continue
        test = stats.welch(best_values, values)
        tests[p.name] = test
        if test is None:
            decidable = False
        elif test.p is not None and test.p >= stats.ALPHA:
            tied.append(p.name)
    return Ranking(best.name, tied, decidable, tests)


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _column(key: str) -> str:
    return key.replace(".", "_")  # the table filter reads "a.b" as nested keys


def sweep_rows(points: list[Point], ranking: Ranking, swept_keys: list[str]) -> list[dict]:
    rows = []
    for p in points:
        best = summary(p.values_of(SWEEP_METRIC))
        failed = [m for m in p.members if not m.ok]
        test = ranking.tests.get(p.name)
        if p.name == ranking.best:
            mark = N_("★ best")
        elif p.name in ranking.tied:
            mark = N_("≈ best (p = {p:.3g})", p=test.p)
        elif test is not None:
            mark = N_("worse (p = {p:.3g})", p=test.p)
        else:
            mark = "—"
        if not p.ok:
            status = N_("failed: {n} of {total} members", n=len(failed), total=len(p.members))
        elif failed:
            status = N_("{ok} of {total} members completed", ok=len(p.ok), total=len(p.members))
        else:
            status = STATUS_WORDS["completed"]
        rows.append(
            {
                "point": p.name,
                "swept": {_column(key): _fmt_value(p.values.get(key)) for key in swept_keys},
                "n": best["n"],
                "best_val_loss": best["mean"],
                "ci": best["half"],
                "final_train_loss": summary(p.values_of("final_train_loss"))["mean"],
                "tokens_per_s": summary(p.values_of("tokens_per_s"))["mean"],
                "train_time_s": summary(p.values_of("train_time_s"))["mean"],
                "status": status,
                "errors": Msg.join([f"{m.member.name}: {m.error}" for m in failed if m.error]) if failed else None,
                "mark": mark,
            }
        )
    return rows


# --------------------------------------------------------------------------- checks (the RULES style)
@dataclass(frozen=True)
class AggregateRule:
    func: object
    description: Msg

    def __call__(self, results: list[MemberResult], points: list[Point]) -> Finding | None:
        return self.func(results, points)


def members_failed(results: list[MemberResult], points: list[Point]) -> Finding | None:
    bad = [r for r in results if not r.ok]
    if not bad:
        return None
    names = ", ".join(f"{r.member.name} ({r.status})" for r in bad)
    return Finding(
        "members_failed",
        "error" if len(bad) == len(results) else "warning",
        N_("{n} of {total} member runs did not complete: {names}; the statistics use the others",
           n=len(bad), total=len(results), names=names),
    )  # fmt: skip


def noise_unknown(results: list[MemberResult], points: list[Point]) -> Finding | None:
    thin = [p.name for p in points if len(p.ok) < 2]
    if not thin:
        return None
    return Finding(
        "noise_unknown",
        "info",
        N_("{n} point(s) have fewer than 2 completed seeds ({names}): their seed noise is unknown, so no "
           "difference involving them can be called real", n=len(thin), names=", ".join(thin)),
    )  # fmt: skip


def seed_outlier(results: list[MemberResult], points: list[Point], z: float = 3.0) -> Finding | None:
    """A seed whose best validation loss lies more than `z` standard deviations of the other seeds from their mean
    (leave-one-out; needs 3 other seeds): the seeds disagree beyond their own noise."""
    out = []
    for p in points:
        for m in p.ok:
            value = m.values.get(SWEEP_METRIC)
            others = [o.values.get(SWEEP_METRIC) for o in p.ok if o is not m]
            others = [v for v in others if v is not None]
            if value is None or len(others) < 3:
                continue
            sd = float(np.std(others, ddof=1))
            if sd > 0 and abs(value - float(np.mean(others))) > z * sd:
                out.append(N_("{member}: {value:.4f} vs {mean:.4f} ± {sd:.4f} (sd) of the other seeds",
                              member=m.member.name, value=value, mean=float(np.mean(others)), sd=sd))  # fmt: skip
    return Finding("seed_outlier", "warning", Msg.join(out)) if out else None


AGGREGATE_RULES: list[AggregateRule] = [
    AggregateRule(members_failed, N_("member runs completed")),
    AggregateRule(noise_unknown, N_("seeds per point")),
    AggregateRule(seed_outlier, N_("seeds agreeing (leave-one-out, 3 sd)")),
]


def aggregate_checks(results: list[MemberResult], points: list[Point]) -> list[Finding]:
    found = [f for rule in AGGREGATE_RULES if (f := rule(results, points)) is not None]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])


# --------------------------------------------------------------------------- plots
def _curve_band(members: list[MemberResult], frame_of, column: str) -> pd.DataFrame | None:
    """Mean, min and max of `column` over the members at the steps every member logged."""
    import pandas as pd

    frames = []
    for m in members:
        frame = frame_of(m.run)
        if frame is None or not len(frame) or column not in frame:
            continue
        frames.append(frame[["step", column]].dropna().assign(member=m.member.name))
    if not frames:
        return None
    both = pd.concat(frames)
    grouped = both.groupby("step")[column].agg(["mean", "min", "max", "count"]).reset_index()
    return grouped[grouped["count"] == len(frames)]


def curves_plot(point: Point, path: Path, lang: str) -> str | None:
    """The learning curves of a point's seeds: mean with a min–max band (training and validation loss)."""
    members = [m for m in point.ok if m.run is not None]
    if not members:
        return None
    train = _curve_band(members, lambda r: r.metrics, "loss")
    val = _curve_band(members, lambda r: r.validation, "val_loss")
    if train is None and val is None:
        return None
    _, rc, _note = plot_language(lang)
    plt = pyplot()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(7, 4))
        for band, colour, label in ((train, "#4c72b0", _("training loss")), (val, "#dd8452", _("validation loss"))):
            if band is None or not len(band):
                continue
            ax.plot(band["step"], band["mean"], color=colour, lw=1.5,
                    label=_("{what}, mean of {n} seeds").format(what=label, n=len(members)))  # fmt: skip
            ax.fill_between(band["step"], band["min"], band["max"], color=colour, alpha=0.25,
                            label=_("{what}, min–max").format(what=label))  # fmt: skip
        ax.set_xlabel(_("optimizer step"))
        ax.set_ylabel(_("cross-entropy loss (nats/token)"))
        ax.set_title(_("{name}: loss over seeds").format(name=point.name))
        ax.grid(alpha=0.3)
        ax.legend()
        return save(fig, path)


def log_axis(key: str, values: list) -> bool:
    """Learning rates and any positive numeric key spanning at least 10× get a log x axis."""
    nums = [float(v) for v in values if _number(v) is not None]
    if len(nums) != len(values) or not nums or min(nums) <= 0:
        return False
    return key.split(".")[-1] in ("lr", "learning_rate") or max(nums) / min(nums) >= 10


def sweep_plot(points: list[Point], key: str, path: Path, lang: str) -> str | None:
    """Best validation loss (mean, 95% CI bars where n ≥ 2) against one swept key; one line per combination of the
    other swept keys."""
    others = sorted({k for p in points for k in p.values if k != key})
    lines: dict[tuple, list] = {}
    for p in points:
        s = summary(p.values_of(SWEEP_METRIC))
        if key not in p.values or s["mean"] is None:
            continue
        lines.setdefault(tuple((k, p.values.get(k)) for k in others), []).append((p.values[key], s))
    if not lines:
        return None
    xs_all = [x for pts in lines.values() for x, _s in pts]
    numeric = all(_number(x) is not None for x in xs_all)
    categories = sorted({str(x) for x in xs_all}) if not numeric else []
    _, rc, _note = plot_language(lang)
    plt = pyplot()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(7, 4))
        for combo, pts in lines.items():
            pts.sort(key=lambda xs: xs[0] if numeric else str(xs[0]))
            x = [float(v) if numeric else categories.index(str(v)) for v, _s in pts]
            y = [s["mean"] for _v, s in pts]
            err = [s["half"] or 0.0 for _v, s in pts]
            label = ", ".join(f"{k.split('.')[-1]}={_fmt_value(v)}" for k, v in combo) or None
            ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=label)
        if numeric and log_axis(key, xs_all):
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(categories)), categories)
        ax.set_xlabel(key)
        ax.set_ylabel(_("best validation loss (nats/token)"))
        title = _("{metric} against {key} (mean; bars: 95% CI where n ≥ 2)")
        ax.set_title(title.format(metric=_("best validation loss"), key=key), fontsize=10)
        ax.grid(alpha=0.3)
        if any(combo for combo in lines):
            ax.legend()
        return save(fig, path)


# --------------------------------------------------------------------------- the report
def load_members(exp_runs_dir: Path, reports_dir: Path) -> tuple[Members, list[MemberResult]]:
    problems: list[str] = []
    members = MEMBERS.read(exp_runs_dir, problems)
    if problems:
        raise UserError(f"{exp_runs_dir}/{problems[0]}")
    if not members:
        raise UserError(f"{MEMBERS.at(exp_runs_dir)}: no such file (not a seeds/sweep experiment)")
    return members, [read_member(exp_runs_dir, reports_dir, m) for m in members.members]


def _report_section(members: Members, results: list[MemberResult]) -> dict:
    """The experiment's `report:` section: members.json carries it; else a member's (they share it)."""
    if members.report:
        return members.report
    first = next((r.run for r in results if r.run is not None), None)
    return (first.config.get("report") or {}) if first is not None else {}


def _languages(report: dict) -> list[str]:
    lang = report.get("language") or SOURCE_LANGUAGE
    return [lang] if isinstance(lang, str) else list(lang)


def context(exp_runs_dir: Path, reports_dir: Path, lang: str, members: Members, results: list[MemberResult]) -> dict:
    from pipeline.report import compare

    report = _report_section(members, results)
    name = members.experiment or exp_runs_dir.name
    points = points_of(results)
    sweep = len(points) > 1 or bool(members.swept_keys)
    sfx = suffix(lang)
    ctx = {
        "name": name,
        "title": report.get("title") or name,
        "description": members.description,
        "kind": "sweep" if sweep else "seeds",
        "alpha": stats.ALPHA,
        "level": stats.LEVEL,
        "seeds": members.seeds,
        "swept_keys": members.swept_keys,
        "swept_columns": {key: _column(key) for key in members.swept_keys},
        "n_members": len(results),
        "n_ok": sum(r.ok for r in results),
        "members": member_rows(results),
        "findings": aggregate_checks(results, points),
        "rules": [r.description for r in AGGREGATE_RULES],
        "points": [],
        "sweep_rows": [],
        "sweep_plots": [],
        "ranking": None,
    }
    for i, p in enumerate(points):
        ctx["points"].append(
            {
                "name": p.name,
                "n_ok": len(p.ok),
                "n": len(p.members),
                "headline": headline_rows(p),
                "plot": curves_plot(p, reports_dir / f"seeds_loss{'-' + str(i) if sweep else ''}{sfx}.png", lang),
            }
        )
    if sweep:
        ranking = rank(points)
        ctx["ranking"] = ranking
        ctx["sweep_rows"] = sweep_rows(points, ranking, members.swept_keys)
        for key in members.swept_keys:
            file = sweep_plot(points, key, reports_dir / f"sweep_{key.replace('.', '_')}{sfx}.png", lang)
            if file:
                ctx["sweep_plots"].append({"key": key, "file": file})
    base_name = report.get("compare_to")
    ctx["compare"] = None
    if base_name and not sweep:
        base_dir = exp_runs_dir.parent / base_name
        base = compare.seed_group(base_dir, reports_dir.parent / base_name)
        ctx["compare"] = (
            {"baseline": base_name, "missing": True}
            if base is None
            else {"baseline": base_name, "missing": False, **compare.seed_comparison(base, compare.SeedGroup(
                name, [r.run for r in points[0].ok if r.run is not None]))}
        )  # fmt: skip
    return ctx


def render_aggregate(
    exp_runs_dir: Path, reports_dir: Path, languages: list[str] | None = None, templates: Path = TEMPLATES
) -> list[Path]:
    """`reports/<EXP>/report.md` (+ report.<lang>.md) over the members listed in `runs/<EXP>/members.json`."""
    exp_runs_dir, reports_dir = Path(exp_runs_dir), Path(reports_dir)
    members, results = load_members(exp_runs_dir, reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    langs = languages or _languages(_report_section(members, results))
    written = []
    for lang in langs:
        ctx = context(exp_runs_dir, reports_dir, lang, members, results)
        text = environment(templates, lang).get_template("aggregate.md.j2").render(**ctx)
        out = reports_dir / f"report{suffix(lang)}.md"
        write_text(out, text)
        written.append(out)
    return written


def run_aggregate(run_root: Path, out_dir: Path) -> list[Path]:
    """`python -m pipeline aggregate runs/<EXP> --out reports/<EXP>`: every language of members.json's report."""
    return render_aggregate(run_root, out_dir)
