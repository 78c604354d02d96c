"""Report stage: run directory -> `reports/<EXP>/report.md` + PNG plots.

loader (files -> tables) -> checks (findings) -> plots (PNG) -> Jinja2 template (formatting only).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import yaml
from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined
from tabulate import tabulate

from pipeline.atomic import write_text
from pipeline.config.schema import Experiment
from pipeline.report import compare, plots, tables
from pipeline.report.checks import SEVERITY_ORDER, run_checks
from pipeline.report.loader import Run, load_run

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
MISSING = "—"


# --------------------------------------------------------------------------- filters (formatting only)
def _missing(x) -> bool:
    # Partial runs lack files (no DONE, no provenance): their fields arrive as Undefined and print as "—".
    return x is None or isinstance(x, Undefined) or (isinstance(x, float) and math.isnan(x))


def fmt_num(x, spec: str = ".4f") -> str:
    if _missing(x):
        return MISSING
    if isinstance(x, str) or spec == "s" or not isinstance(x, (int, float)):
        return str(x)
    return format(x, spec)


def fmt_bytes(n) -> str:
    if _missing(n):
        return MISSING
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def _dig(record: dict, key: str):
    """`a.b` reads record["a"]["b"]; booleans print as yes/no."""
    value = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


def fmt_table(rows, columns: dict[str, list[str]]) -> str:
    """GitHub-flavoured Markdown table; `columns` maps field -> [header, format spec]."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    body = [[fmt_num(_dig(r, key), spec) for key, (_, spec) in columns.items()] for r in records]
    headers = [header for header, _ in columns.values()]
    align = ["left" if spec == "s" else "right" for _, spec in columns.values()]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True, colalign=align)


def environment(templates: Path = TEMPLATES, lang: str = "en") -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates / lang),
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(num=fmt_num, bytes=fmt_bytes, table=fmt_table)
    return env


# --------------------------------------------------------------------------- context
def _first_last(frame, column):
    values = frame[column].dropna() if len(frame) else []
    return (float(values.iloc[0]), float(values.iloc[-1])) if len(values) else (None, None)


def build_context(run: Run, cfg: Experiment, report_dir: Path) -> dict:
    max_rows = cfg.report.max_table_rows
    val_first, val_last = _first_last(run.validation, "val_loss")
    loss_first, loss_last = _first_last(run.metrics, "loss")
    seq_len = cfg.seq_len
    splits = (run.prepared or {}).get("splits", {})
    resolve = run.resolve or {}
    comp = None
    if cfg.report.compare_to:
        base_dir = Path(run.root).parent / cfg.report.compare_to
        comp = {"baseline": cfg.report.compare_to, "missing": True}
        if (base_dir / "config.yaml").is_file():
            base = load_run(base_dir)
            comp = {
                **compare.comparison(base, run),
                "missing": False,
                "plot": plots.overlay_plot(base, run, report_dir),
            }
    findings = run_checks(run) + (compare.findings(comp) if comp and not comp["missing"] else [])
    findings.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return {
        "compare": comp,
        "title": cfg.report.title or run.name,
        "name": run.name,
        "description": cfg.description,
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": run.status,
        "steps_done": run.steps_done,
        "steps_planned": run.steps_planned,
        "loss": {"first": loss_first, "last": loss_last},
        "val": {"first": val_first, "last": val_last},
        "val_change_pct": (100 * (val_last - val_first) / val_first) if val_first and val_last is not None else None,
        "best_val": tables.best_validation(run),
        "throughput": tables.throughput(run),
        "flops": {
            "per_token": tables.median_of(run, "flops_per_token"),
            "per_s": tables.median_of(run, "flops_per_s"),
            "mfu": tables.median_of(run, "mfu"),
            "mfu_datasheet": tables.median_of(run, "mfu_datasheet"),
        },
        "tokens_seen": int(run.metrics["tokens"].max()) if run.metrics["tokens"].notna().any() else None,
        "train_time_s": ((run.provenance or {}).get("stages", {}).get("train") or {}).get("duration_s"),
        "done": run.done or {},
        "params": (run.done or {}).get("parameters", {}),
        "config": cfg.model_dump(mode="json"),
        "seq_len": seq_len,
        "prepared": run.prepared or {},
        "splits": [{"split": k, **v, "sequences": v["tokens"] // seq_len} for k, v in splits.items()],
        "training": tables.training_table(run, max_rows),
        "validation": tables.validation_table(run, max_rows),
        "curve": tables.curve_phases(run),
        "n_metrics": len(run.metrics),
        "n_validation": len(run.validation),
        "plots": plots.make_plots(run, report_dir),
        "ppl": run.perplexity,
        "checkpoints": run.checkpoints,
        "findings": findings,
        "stages": run.stages,
        "bench": run.bench or {},
        "bench_rows": tables.bench_table(run),
        "bench_not_ok": tables.bench_not_ok(run),
        "harness": tables.harness_table(run),
        "harness_timing": run.harness_timing or {},
        "harness_timing_rows": tables.harness_timing_rows(run.harness_timing),
        "n_errors": sum(f.severity == "error" for f in findings),
        "prov": run.provenance or {},
        "overrides": resolve.get("overrides", []),
        "config_hash": (run.provenance or {}).get("config_hash") or resolve.get("config_hash"),
    }


def imported_context(run: Run, cfg: Experiment) -> dict:
    """What only an imported run's report shows: the source, its files, its own config, its extra columns."""
    from pipeline.importers.common import flatten

    src_cfg = run.root / "import" / "source_config.yaml"
    source_config = yaml.safe_load(src_cfg.read_text(encoding="utf-8")) if src_cfg.is_file() else {}
    rows = [
        {"key": k, "value": json.dumps(v) if not isinstance(v, str) else v}
        for k, v in flatten(source_config or {}).items()
    ]
    return {
        "imported": run.imported,
        "segments": run.segments,
        "source_config": rows,
        "columns": tables.recorded_columns(run),
        "training": tables.imported_training(run, cfg.report.max_table_rows),
        "medians": {
            c: tables.median_of(run, c)
            for c in ("flops_per_s", "mem_peak_gib", "mem_peak_pct", "power_w", "step_time_s")
        },
        "summary": (run.done or {}).get("summary") or {},
    }


def render(run_dir: Path, cfg: Experiment, report_dir: Path, templates: Path = TEMPLATES) -> Path:
    run = load_run(run_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    context = build_context(run, cfg, report_dir)
    template = "report.md.j2"
    if run.imported is not None:
        context.update(imported_context(run, cfg))
        template = "imported.md.j2"
    text = environment(templates, cfg.report.language).get_template(template).render(**context)
    out = report_dir / "report.md"
    write_text(out, text)
    return out


def run_report(cfg: Experiment, run_dir: Path, report_dir: Path) -> Path:
    return render(run_dir, cfg, report_dir)
