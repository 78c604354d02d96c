"""Report sections: one small context function + one partial `templates/sections/<name>.md.j2` each.

`NATIVE` and `IMPORTED` list, in order, what a trained run's and an imported run's report show; shared
sections (status, checks, validation, source of numbers …) appear in both. To add a section: write
`templates/sections/<name>.md.j2`, add `Section("<name>", <context function or None>)` to the lists.

A context function takes the `Report` (run, config, language, baseline) and returns the keys its partial
reads; every section also sees `base_context` (title, status, stages, findings, plots, provenance, …).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pipeline import records
from pipeline.dotted import flatten
from pipeline.report import compare, plots, tables
from pipeline.report.checks import RULES, SEVERITY_ORDER, applicable, run_checks
from pipeline.report.loader import Run, load_run

if TYPE_CHECKING:  # the config schema's pydantic models are ≈ 0.2 s of the index's start-up; only annotations here
    from pipeline.config.schema import Experiment

log = logging.getLogger(__name__)


@dataclass
class Report:
    run: Run
    cfg: Experiment
    report_dir: Path
    lang: str
    baseline: Run | None = None  # the `report.compare_to` run, when its directory exists


@dataclass(frozen=True)
class Section:
    name: str
    context: Callable[[Report], dict] | None = None

    @property
    def template(self) -> str:
        return f"sections/{self.name}.md.j2"


def load_baseline(run: Run, cfg: Experiment) -> Run | None:
    """The `report.compare_to` run: `runs/<name>/`, or, when that experiment has several seeds, its member with this
    run's seed (else its first completed member); its seed noise is compared in the experiments' aggregate reports."""
    if not cfg.report.compare_to:
        return None
    from pipeline.report import aggregate

    base_dir = aggregate.runs_root(run) / cfg.report.compare_to
    if aggregate.is_aggregate(base_dir):
        base_dir = aggregate.matching_member(base_dir, cfg.train.seed)
    return load_run(base_dir) if base_dir is not None and (base_dir / "config.yaml").is_file() else None


def _first_last(frame, column):
    values = frame[column].dropna() if len(frame) else []
    return (float(values.iloc[0]), float(values.iloc[-1])) if len(values) else (None, None)


# --------------------------------------------------------------------------- shared by every section
def base_context(r: Report) -> dict:
    run, cfg = r.run, r.cfg
    rules = applicable(RULES, r.baseline)
    findings = run_checks(run, rules, baseline=r.baseline)
    findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    plot_files, plot_note = plots.make_plots(run, r.report_dir, r.lang)
    return {
        "title": cfg.report.title or run.name,
        "name": run.name,
        "description": cfg.description,
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": run.status,
        "steps_done": run.steps_done,
        "steps_planned": run.steps_planned,
        "stages": run.stages,
        "findings": findings,
        "rules": [rule.description for rule in rules],
        "n_errors": sum(f.severity == "error" for f in findings),
        "n_warnings": sum(f.severity == "warning" for f in findings),
        "imported": run.imported,
        "done": run.done,
        "config": cfg.model_dump(mode="json"),
        "prov": run.provenance,
        "plots": plot_files,
        "plot_note": plot_note,
        "n_metrics": len(run.metrics),
        "n_validation": len(run.validation),
        "loss": dict(zip(("first", "last"), _first_last(run.metrics, "loss"))),
        "val": dict(zip(("first", "last"), _first_last(run.validation, "val_loss"))),
        "throughput": tables.throughput(run),
        "tokens_seen": int(run.metrics["tokens"].max()) if run.metrics["tokens"].notna().any() else None,
        "curve": tables.curve_phases(run),
        "validation": tables.validation_table(run, cfg.report.max_table_rows),
        "validation_sets": tables.validation_sets(run, cfg.report.max_table_rows),
        "validation_main": run.validation["dataset"].dropna().iloc[0]
        if "dataset" in run.validation and run.validation["dataset"].notna().any()
        else None,
        "harness_groups": tables.harness_groups(run),
        "harness": tables.harness_table(run),
        "harness_timing": run.harness_timing,
        "ppl": run.perplexity,
        "overrides": run.resolve.overrides,
        "config_hash": run.provenance.config_hash or run.resolve.config_hash,
    }


# --------------------------------------------------------------------------- section contexts
def summary(r: Report) -> dict:
    run = r.run
    val_first, val_last = _first_last(run.validation, "val_loss")
    return {
        "val_change_pct": (100 * (val_last - val_first) / val_first) if val_first and val_last is not None else None,
        "best_val": tables.best_validation(run),
        "flops": {
            "per_token": tables.median_of(run, "flops_per_token"),
            "per_s": tables.median_of(run, "flops_per_s"),
            "mfu": tables.median_of(run, "mfu"),
            "mfu_datasheet": tables.median_of(run, "mfu_datasheet"),
        },
        "train_time_s": tables.train_time(run).get("total_s"),
        "train_time": tables.train_time(run),
        "params": run.done.parameters,
    }


def expectations(r: Report) -> dict:
    """The `expect:` goals as a pass/fail table with the measured value beside each target."""
    from pipeline.report.expect import check
    from pipeline.report.i18n import N_

    lines = r.cfg.expect
    if not lines:
        return {"expectations": []}
    word = {True: N_("✅ pass"), False: N_("❌ fail"), None: N_("❔ not measured")}
    rows = [{**vars(o), "result": word[o.passed]} for o in check(r.run, r.baseline, lines)]
    return {"expectations": rows}


def notes(r: Report) -> dict:
    """`reports/<EXP>/notes.md`, written by hand (purpose, interpretation, next steps): kept across re-renders."""
    path = r.report_dir / "notes.md"
    text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return {"notes": text, "notes_file": f"reports/{r.run.name}/notes.md"}


def comparison(r: Report) -> dict:
    if not r.cfg.report.compare_to:
        return {"compare": None}
    if r.baseline is None:
        return {"compare": {"baseline": r.cfg.report.compare_to, "missing": True}}
    from pipeline.report import aggregate

    base_exp = aggregate.runs_root(r.run) / r.cfg.report.compare_to
    member = Path(r.baseline.root).relative_to(base_exp).as_posix() if aggregate.is_aggregate(base_exp) else None
    return {
        "compare": {
            **compare.comparison(r.baseline, r.run),
            "missing": False,
            "baseline_member": member,
            "plot": plots.overlay_plot(r.baseline, r.run, r.report_dir, r.lang),
        }
    }


def data(r: Report) -> dict:
    seq_len = r.cfg.seq_len
    splits = r.run.prepared.splits
    return {
        "seq_len": seq_len,
        "prepared": r.run.prepared,
        "splits": [{"split": k, **v.model_dump(), "sequences": (v.tokens or 0) // seq_len} for k, v in splits.items()],
    }


def model(r: Report) -> dict:
    return {"prepared": r.run.prepared, "params": r.run.done.parameters}


def training(r: Report) -> dict:
    return {"training": tables.training_table(r.run, r.cfg.report.max_table_rows)}


def harness(r: Report) -> dict:
    return {
        "harness_timing_rows": tables.harness_timing_rows(r.run.harness_timing),
        "samples": tables.samples_table(r.run.harness_timing),
        "harness_skipped": records.EVAL_DONE.read(r.run.root, []).harness_skipped,
    }


def bench(r: Report) -> dict:
    return {
        "bench": r.run.bench,
        "bench_rows": tables.bench_table(r.run),
        "bench_not_ok": tables.bench_not_ok(r.run),
    }


def artifacts(r: Report) -> dict:
    return {"checkpoints": r.run.checkpoints}


def imported_summary(r: Report) -> dict:
    run = r.run
    return {
        **summary(r),
        "segments": run.segments,
        "medians": {
            c: tables.median_of(run, c)
            for c in ("flops_per_s", "mem_peak_gib", "mem_peak_pct", "power_w", "step_time_s")
        },
        "summary": run.done.summary or {},
    }


def imported_training(r: Report) -> dict:
    imp = r.run.imported
    return {
        "extra_series": [{"name": k, "rows": v} for k, v in (imp.extra_series or {}).items()],
        "not_carried": [{"name": k, "rows": v} for k, v in (imp.not_carried or {}).items()],
        "segments": r.run.segments,
        "columns": tables.recorded_columns(r.run),
        "training": tables.imported_training(r.run, r.cfg.report.max_table_rows),
    }


def command(r: Report) -> dict:
    """A train.command run: what ran, how it ended, its logs and its script's repository (provenance)."""
    fact = r.run.provenance.train_command
    logs = r.cfg.train.logs
    return {
        "train_command": fact or {},
        "command_logs": {"from": logs.from_ if logs else None, "path": fact.logs if fact else None},
        "stderr_tail": r.run.done.stderr_tail or [],
        "script_git": (fact.script_git if fact else None) or {},
    }


def source(r: Report) -> dict:
    """The source's files and its own config, verbatim (dotted keys)."""
    src_cfg = r.run.root / "import" / "source_config.yaml"
    source_config = yaml.safe_load(src_cfg.read_text(encoding="utf-8")) if src_cfg.is_file() else {}
    rows = [
        {"key": k, "value": json.dumps(v) if not isinstance(v, str) else v}
        for k, v in flatten(source_config or {}).items()
    ]
    return {"source_config": rows}


# --------------------------------------------------------------------------- the section tables
NATIVE: list[Section] = [
    Section("status"),
    Section("summary", summary),
    Section("expectations", expectations),
    Section("notes", notes),
    Section("comparison", comparison),
    Section("checks"),
    Section("environment"),
    Section("model", model),
    Section("data", data),
    Section("hyperparameters"),
    Section("training", training),
    Section("validation"),
    Section("perplexity"),
    Section("harness", harness),
    Section("bench", bench),
    Section("artifacts", artifacts),
    Section("reproduce"),
]

# A run trained by its own command (train.command): NATIVE without our model, data, perplexity, bench and artifacts,
# and the command after the checks.
NOT_EXTERNAL = {"model", "data", "hyperparameters", "perplexity", "bench", "artifacts"}
EXTERNAL: list[Section] = [
    t for s in NATIVE if s.name not in NOT_EXTERNAL
    for t in ((s, Section("command", command)) if s.name == "checks" else (s,))
]  # fmt: skip

IMPORTED: list[Section] = [
    Section("status"),
    Section("imported_summary", imported_summary),
    Section("expectations", expectations),
    Section("notes", notes),
    Section("checks"),
    Section("imported_training", imported_training),
    Section("validation"),
    Section("harness", harness),
    Section("source", source),
    Section("imported_reproduce"),
]


def context(r: Report, table: list[Section]) -> dict:
    """The base context, each section's keys, and `sections` (the partials, in order) for the template."""
    ctx = base_context(r)
    for section in table:
        if section.context is not None:
            ctx.update(section.context(r))
    ctx["sections"] = [s.template for s in table]
    return ctx
