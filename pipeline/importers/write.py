"""Write an `Imported` run into `runs/<EXP>/`, the same contract the stages write (README, "Run directory").

Everything is built in a hidden sibling directory and moved into place whole, so a failed import leaves
`runs/` as it was. An existing run is replaced only if it came from an import itself; a run this project
trained is never overwritten.
"""

from __future__ import annotations

import collections
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline import records
from pipeline.atomic import sha256_file, write_text
from pipeline.config.load import EXPERIMENTS_DIR, RUNS_DIR, imported_config_path
from pipeline.config.resolve import freeze
from pipeline.config.schema import Experiment
from pipeline.errors import UserError
from pipeline.importers.common import Imported, SourceError, rel
from pipeline.lock import INFO_NAME, LOCK_NAME
from pipeline.rundir import RunDir


def check_target(name: str, runs: Path = RUNS_DIR, experiments: Path = EXPERIMENTS_DIR) -> None:
    """Refuse before reading anything: the name must not belong to an experiment or a trained run."""
    if (experiments / f"{name}.yaml").is_file():
        raise UserError(
            f"EXP={name}: {experiments / (name + '.yaml')} defines an experiment of that name; "
            f"import under another name"
        )
    target = runs / name
    made = target.is_dir() and any(p.name not in (LOCK_NAME, INFO_NAME) for p in target.iterdir())  # not just our lock
    if made and not imported_config_path(name, runs).is_file():
        raise UserError(
            f"EXP={name}: {target}/ holds a run this project made; import under another name "
            f"(or `make clean EXP={name}` first)"
        )


def _config_tree(imp: Imported, name: str) -> dict:
    steps_done = imp.done
    data = {
        "source": {"type": "imported", "name": imp.data.get("source")},
        "tokenizer": {"type": "imported", "name": imp.data.get("tokenizer")},
    }
    if imp.data.get("seq_len"):
        data["seq_len"] = imp.data["seq_len"]
    return {
        "name": name,
        "description": f"Imported from {imp.format}: {imp.source}",
        "model": {k: v for k, v in imp.model.items() if v is not None},
        "data": data,
        "train": {
            "steps": imp.steps_planned or steps_done or 1,
            **{k: v for k, v in imp.train.items() if v is not None},
        },
        "imported": {"format": imp.format, "source": str(imp.source), "provides": imp.provides},
    }


def _drop(tree: dict, dotted: str) -> object:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.get(part, {})
    return node.pop(leaf, None)


def validated_config(imp: Imported, name: str) -> Experiment:
    """Our schema for what the source's config says; a value our schema rejects is left out, with a warning."""
    tree = _config_tree(imp, name)
    for _ in range(32):
        try:
            return Experiment.model_validate(tree)
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            key = (
                msg.split(":", 1)[0]
                if err["type"] == "value_error" and ":" in msg
                else ".".join(str(p) for p in err["loc"])
            )
            if key.split(".")[0] not in ("model", "train", "data") or key == "train.steps" or _drop(tree, key) is None:
                raise SourceError(f"{imp.source}: the recovered config does not validate: {key}: {msg}") from None
            imp.warnings.append(f"source config value for {key} not carried over ({msg})")
    raise SourceError(f"{imp.source}: the recovered config does not validate")


def train_status(imp: Imported) -> str:
    """completed / partial / failed_before_first_step / unknown (no planned length), or what the source itself
    says ended the run (early_stopped, failed) where an adapter recorded it."""
    if imp.status:
        return imp.status
    if imp.steps_planned is None:
        return "unknown"
    return "completed" if imp.done >= imp.steps_planned else "partial"


def write_outputs(imp: Imported, run: RunDir, steps_from: str | None) -> None:
    steps_done = imp.done
    if "train" in imp.provides:
        records.METRICS.write_rows(run.root, imp.metrics)
        records.VALIDATION.write_rows(run.root, imp.validation)
        if imp.extra:
            records.EXTRA.write_rows(run.root, imp.extra)
        records.PLAN.write(run.root, {"steps_planned": imp.steps_planned, "steps_planned_from": steps_from})
        records.TRAIN_DONE.write(
            run.root,
            {
                "status": train_status(imp),
                "status_why": imp.status_why,
                "steps_done": steps_done,
                "steps_planned": imp.steps_planned,
                "imported": True,
                "segments": len({r["segment"] for r in imp.metrics}),
                "summary": imp.summary,
            },
        )
    if "eval" in imp.provides:
        records.LM_EVAL.write(run.root, imp.lm_eval or {})
        records.TASKS.write_rows(run.root, imp.tasks)
        records.HARNESS_TIMING.write(run.root, imp.eval_info)
        records.EVAL_DONE.write(run.root, {"status": "completed", "imported": True})


def extra_series(rows: list[dict]) -> dict[str, int]:
    """Each carried series without a key of ours -> its row count (the report lists them)."""
    counts = collections.Counter(
        (row["source"], k, row.get("dataset"))
        for row in rows
        for k in row
        if k not in ("step", "source", "dataset", "segment")
    )
    return {f"{source}/{k}" + (f" ({dataset})" if dataset else ""): n for (source, k, dataset), n in counts.items()}


def import_record(imp: Imported, steps_from: str | None) -> dict:
    root = imp.source
    return {
        "format": imp.format,
        "source": str(imp.source),
        "source_absolute": str(imp.source.resolve()),
        "imported_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": [
            {"path": rel(p, root), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in dict.fromkeys(imp.files)
        ],
        "provides": imp.provides,
        "steps_planned": imp.steps_planned,
        "steps_planned_from": steps_from,
        "warnings": imp.warnings,
        "not_carried": imp.not_carried,
        "runs": imp.runs,
        "events": imp.events,
        "extra_series": extra_series(imp.extra),
        "summary": imp.summary,
        "recovered": imp.recovered,
    }


def write_run(imp: Imported, name: str, steps_from: str | None, runs: Path = RUNS_DIR) -> Path:
    cfg = validated_config(imp, name)
    target = runs / name
    tmp = runs / f".{name}.importing"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        run = RunDir(tmp)
        write_outputs(imp, run, steps_from)
        record = import_record(imp, steps_from)
        write_text(records.IMPORT_CONFIG.at(tmp), yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        write_text(
            records.IMPORT_SOURCE_CONFIG.at(tmp),
            yaml.safe_dump(imp.source_config, sort_keys=False, allow_unicode=True),
        )
        records.PROVENANCE.write(
            run.root,
            {
                "imported": {k: record[k] for k in ("format", "source", "imported_utc", "files")},
                "recovered": imp.recovered,
                "stages": {},
            },
        )
        freeze(cfg, run)
        records.cache_logs(tmp)  # renamed with the folder: same inodes, so the cache stays current
        records.IMPORT.write(tmp, record)  # last: its presence marks a complete import
        old = runs / f".{name}.replaced"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
