"""`make import SRC=<path> FROM=<tool> EXP=<name>`: runs from trainers we did not write -> `runs/<name>/`.

One small adapter per tool reads its files into an `Imported` (common.py); `write.py` turns that into the
run directory the report reads, so `make report EXP=<name>` works unchanged.

>>> run_import(Path("out/debug_3"), "lingua", "debug_3_lingua")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import UserError
from pipeline.importers import hf_trainer, lightning, lingua, lm_eval
from pipeline.importers.common import Imported
from pipeline.importers.write import check_target, write_run

log = logging.getLogger(__name__)
ADAPTERS = {"lingua": lingua.read, "hf-trainer": hf_trainer.read, "lightning": lightning.read, "lm-eval": lm_eval.read}


def read_source(src: Path, fmt: str, mapping: dict[str, str] | None = None) -> Imported:
    if fmt not in ADAPTERS:
        raise UserError(f"FROM={fmt}: expected one of {', '.join(ADAPTERS)}")
    if not src.exists():
        raise UserError(f"SRC={src}: no such file or directory")
    if mapping and fmt != "lightning":
        raise UserError(f"MAP: only FROM=lightning takes column names (got FROM={fmt})")
    return lightning.read(src, mapping) if fmt == "lightning" else ADAPTERS[fmt](src)


def run_import(
    src: Path, fmt: str, name: str, mapping: dict[str, str] | None = None, steps_planned: int | None = None
) -> Path:
    check_target(name)
    imp = read_source(src, fmt, mapping)
    steps_from = "source" if imp.steps_planned else None
    if steps_planned is not None:
        if imp.steps_planned and imp.steps_planned != steps_planned:
            imp.warnings.append(f"STEPS={steps_planned} replaces the source's {imp.steps_planned} planned steps")
        imp.steps_planned, steps_from = steps_planned, "STEPS"
    target = write_run(imp, name, steps_from)
    for warning in imp.warnings:
        log.warning("%s", warning)
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
