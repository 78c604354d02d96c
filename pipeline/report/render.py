"""Report stage: run directory -> `reports/<EXP>/report.md` (+ `report.<lang>.md`) + PNG plots.

loader (files -> tables) -> checks (findings) -> plots (PNG) -> sections (pipeline/report/sections.py: one
context function + one partial in templates/sections/ each) -> Jinja2 (formatting and wording only; wording
comes from the language's gettext catalog, pipeline/locale/).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined
from tabulate import tabulate

from pipeline.atomic import write_text
from pipeline.errors import UserError
from pipeline.report import sections, summary
from pipeline.report.i18n import HEADLINE, IMPORT_HEADLINE, NO, SEVERITY, STATUS, YES, suffix, translate, translations
from pipeline.report.loader import load_run

if TYPE_CHECKING:  # the config schema's pydantic models are ≈ 0.2 s of the index's start-up; only annotations here
    from pipeline.config.schema import Experiment

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
REPORTS_DIR = Path("reports")
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


def _dig(record, key: str):
    """`a.b` reads record["a"]["b"] (or the attribute, for typed records); booleans print as yes/no."""
    value = record
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return {True: YES, False: NO}.get(value, value) if isinstance(value, bool) else value


def _default(value, fallback="", boolean: bool = False):
    """Jinja's `default`, where None (a field the record does not have) counts as missing too."""
    if _missing(value) or (boolean and not value):
        return fallback
    return value


def fmt_table(rows, columns: dict[str, list[str]], tr=None) -> str:
    """GitHub-flavoured Markdown table; `columns` maps field -> [header, format spec]. Msg cells are
    translated with `tr`; numbers are formatted by their column's spec, the same in every language."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    body = [[fmt_num(translate(_dig(r, key), tr), spec) for key, (_, spec) in columns.items()] for r in records]
    headers = [header for header, _ in columns.values()]
    align = ["left" if spec == "s" else "right" for _, spec in columns.values()]
    # "pipe" writes the alignment row (|---:|), so numbers are right-aligned on GitHub too ("github" does not).
    return tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align)


def environment(templates: Path = TEMPLATES, lang: str = "en") -> Environment:
    """Jinja2 with the i18n extension and `lang`'s catalog: `{% trans %}`/`_()` in templates, and every Msg
    built in Python (findings, verdicts, labels) translated when it is printed (`finalize`) or tabulated."""
    tr = translations(lang)
    env = Environment(
        loader=FileSystemLoader(templates),
        extensions=["jinja2.ext.i18n"],
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        # A field a record does not have is None: it prints as "—", never as "None".
        finalize=lambda value: MISSING if value is None else translate(value, tr),
    )
    env.install_gettext_translations(tr, newstyle=True)
    env.filters.update(
        num=lambda x, spec=".4f": fmt_num(translate(x, tr), spec),
        bytes=fmt_bytes,
        t=lambda value: translate(value, tr),
        table=lambda rows, columns: fmt_table(rows, columns, tr),
        default=_default,
    )
    env.globals.update(lang=lang, STATUS=STATUS, HEADLINE=HEADLINE, IMPORT_HEADLINE=IMPORT_HEADLINE, SEVERITY=SEVERITY)
    return env


def render(
    run_dir: Path, cfg: Experiment, report_dir: Path, templates: Path = TEMPLATES, running: bool = False
) -> list[Path]:
    """Every language of `report.language`: English to report.md, another language to report.<lang>.md
    (its plots get the same suffix). Returns the report files written, in the order of the config.
    `running`: a live look (`make peek`) at a train stage still at work."""
    since = summary.sources(run_dir)  # before reading: a write meanwhile leaves the summary visibly stale
    run = load_run(run_dir)
    run.running = running
    report_dir.mkdir(parents=True, exist_ok=True)
    baseline = sections.load_baseline(run, cfg)
    table = sections.IMPORTED if run.imported else sections.EXTERNAL if cfg.train.command else sections.NATIVE
    template = "imported.md.j2" if run.imported else "report.md.j2"
    written = []
    for lang in cfg.report.languages:
        report = sections.Report(run, cfg, report_dir, lang, baseline)
        context = sections.context(report, table)
        text = environment(templates, lang).get_template(template).render(**context)
        out = report_dir / f"report{suffix(lang)}.md"
        write_text(out, text)
        written.append(out)
    if not running:  # a peek takes no lock and writes nothing into the run
        summary.write(run_dir, run, baseline, since)  # the run's `make index` row: the index reads no log again
    return written


class CommandFailed(UserError):
    """The report is written, and it describes a train.command that failed: `make report` must not succeed."""

    exit_code = 1


def run_report(cfg: Experiment, run_dir: Path, report_dir: Path | None = None) -> list[Path]:
    """The report stage: `reports/<EXP>/` unless another folder is given (`--out`)."""
    from pipeline import records

    written = render(run_dir, cfg, report_dir or REPORTS_DIR / Path(run_dir).name)
    done = records.TRAIN_DONE.read(Path(run_dir))
    if cfg.train.command and done.status == "failed":
        planned = "?" if done.steps_planned is None else f"{done.steps_planned:,d}"
        raise CommandFailed(
            f"train.command exited with code {done.exit_code} after {done.steps_done or 0:,d} of {planned} steps; "
            f"the report says so: {written[0]}"
        )
    return written


def peek(run_dir: Path, report_dir: Path) -> list[Path]:
    """`make peek`: the report from what the train stage has logged so far, into `report_dir`
    (reports/<EXP>/peek/), while the stage runs. Takes no lock and writes nothing in the run directory, so the
    running stage never waits for it; "running" = the run's lock is held and train/DONE is not there yet."""
    from pipeline import records
    from pipeline.config.resolve import load_resolved
    from pipeline.lock import holder

    cfg = load_resolved(Path(run_dir))
    running = holder(Path(run_dir)) is not None and not records.TRAIN_DONE.at(Path(run_dir)).is_file()
    return render(Path(run_dir), cfg, report_dir, running=running)
