"""`make import SRC=<path> FROM=<tool> EXP=<name>`: runs from trainers we did not write -> `runs/<name>/`.

One adapter per tool (an `Adapter` subclass, adapter.py) reads its files into an `Imported` (common.py);
`write.py` turns that into the run directory the report reads, so `make report EXP=<name>` works unchanged.
`ADAPTERS` below is the one list of importers: FROM= names, the CLI help, the schema's `imported.format`
and the errors for an unknown FROM all come from it. A new importer is a module with one adapter and
its line here.

>>> run_import(Path("out/debug_3"), "lingua", "debug_3_lingua")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import UserError
from pipeline.importers.adapter import Adapter, registry
from pipeline.importers.common import Imported
from pipeline.importers.hf_trainer import HFTrainer
from pipeline.importers.jsonl_metrics import JsonlMetrics
from pipeline.importers.lightning import Lightning
from pipeline.importers.lingua import Lingua
from pipeline.importers.lm_eval import LmEval
from pipeline.importers.tensorboard import TensorBoard
from pipeline.importers.wandb_offline import WandbOffline

log = logging.getLogger(__name__)

ADAPTERS: dict[str, type[Adapter]] = registry(
    Lingua,
    HFTrainer,
    Lightning,
    WandbOffline,
    TensorBoard,
    LmEval,
    JsonlMetrics,
)
AUTO = "auto"  # FROM=auto: the first adapter, in registry order, whose layout SRC has (`Adapter.detect`)


def detect(src: Path) -> tuple[str, Path]:
    """The FROM= name for SRC's layout: the first adapter (registry order: specific layouts before generic
    ones) that recognises the files present; a folder holding a single folder (`<run>/output/`) is looked into."""
    if not src.exists():
        raise UserError(f"SRC={src}: no such file or directory")
    for name, adapter in ADAPTERS.items():
        if adapter.detect(src):
            return name, src
    inner = [p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")] if src.is_dir() else []
    if len(inner) == 1:
        try:
            return detect(inner[0])
        except UserError:
            pass
    raise UserError(
        f"SRC={src}: FROM=auto recognises none of its files; expected one of: "
        + "; ".join(f"{name} ({a.description})" for name, a in ADAPTERS.items())
    )


def adapter_for(fmt: str) -> type[Adapter]:
    if fmt not in ADAPTERS:
        raise UserError(f"FROM={fmt}: expected one of {', '.join(ADAPTERS)}")
    return ADAPTERS[fmt]


def read_source(src: Path, fmt: str, mapping: dict[str, str] | None = None, version: str | None = None) -> Imported:
    if fmt == AUTO:
        fmt, src = detect(src)
        log.info("FROM=auto: %s looks like a %s run", src, fmt)
    adapter = adapter_for(fmt)
    if not src.exists():
        raise UserError(f"SRC={src}: no such file or directory")
    if mapping and not adapter.takes_mapping:
        takers = ", ".join(f"FROM={name}" for name, a in ADAPTERS.items() if a.takes_mapping)
        raise UserError(f"MAP: only {takers} takes column names (got FROM={fmt})")
    if version and not adapter.takes_version:
        takers = ", ".join(f"FROM={name}" for name, a in ADAPTERS.items() if a.takes_version)
        raise UserError(f"VERSION: only {takers} can hold several runs in one SRC (got FROM={fmt})")
    return adapter(mapping, version).read(src)


def run_import(
    src: Path,
    fmt: str,
    name: str,
    mapping: dict[str, str] | None = None,
    steps_planned: int | None = None,
    version: str | None = None,
) -> Path:
    from pipeline.importers.write import check_target, write_run  # config and pydantic: only when importing

    check_target(name)
    imp = read_source(src, fmt, mapping, version)
    fmt, src = imp.format, imp.source
    steps_from = "source" if imp.steps_planned else None
    if steps_planned is not None:
        if imp.steps_planned and imp.steps_planned != steps_planned:
            imp.warnings.append(f"STEPS={steps_planned} replaces the source's {imp.steps_planned} planned steps")
        imp.steps_planned, steps_from = steps_planned, "STEPS"
    target = write_run(imp, name, steps_from)
    for warning in imp.warnings:
        log.warning("%s", warning)
    if imp.not_carried:
        log.warning(
            "not carried (no place for them in the run directory): %s",
            ", ".join(f"{name}: {rows} rows" for name, rows in imp.not_carried.items()),
        )
    log.info(
        "imported %s (%s: %d metric rows, %d validation rows, %d task rows) -> %s; next: make report EXP=%s",
        src,
        fmt,
        len(imp.metrics),
        len(imp.validation),
        len(imp.tasks),
        target,
        name,
    )
    return target
