"""`runs/<EXP>/summary.json`: a run's `make index` row, cached so the index does not parse every log again.

The summary records what it was computed from (`sources`): the size, mtime and inode of every file of the run
(`loader.fingerprint`), the same for its `report.compare_to` baseline (its checks take part), and a hash of the
code that computes it. `current` recomputes the summary whenever any of those differs from now — a stage that
appended a line, a re-import, an edited check — so a summary is never served stale; it is written by the report
stage and by `make index` itself. The fingerprint is taken before the files are read: a write that lands while
they are being read makes the stored fingerprint older than the files, and the next look recomputes.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import yaml

from pipeline import records
from pipeline.report import compare, tables
from pipeline.report.loader import Run, fingerprint, load_run

log = logging.getLogger(__name__)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML was built with it
CODE = ("pipeline/report", "pipeline/records.py", "pipeline/jsonl.py", "pipeline/stages.py")


@functools.cache
def code_hash() -> str:
    """sha256 over the report code: a changed check or loader recomputes every summary."""
    repo = Path(__file__).resolve().parents[2]
    files = sorted(f for c in CODE for f in ([repo / c] if c.endswith(".py") else (repo / c).rglob("*.py")))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(repo)}\0".encode() + f.read_bytes())
    return digest.hexdigest()


def _compare_to(run_dir: Path) -> str | None:
    try:
        config = yaml.load(records.CONFIG.at(run_dir).read_text(encoding="utf-8"), Loader=_LOADER) or {}
        return (config.get("report") or {}).get("compare_to")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None


def _baseline(run_dir: Path, name: str | None) -> dict | None:
    """The baseline's name and files (None while it has no run directory: the checks then run without it)."""
    if not name:
        return None
    from pipeline.report.aggregate import is_aggregate

    base = Path(run_dir).parent / name
    if is_aggregate(base):  # a seeds experiment: which member stands in depends on its members.json and runs
        return {"name": name, "files": fingerprint(base), "aggregate": True}
    return {"name": name, "files": fingerprint(base) if (base / "config.yaml").is_file() else None}


def sources(run_dir: Path, compare_to: str | None = ...) -> dict:
    """What a summary of `run_dir` depends on, as of now (`compare_to`: the run's, when already known; the
    run's files are fingerprinted first, so a config edited meanwhile is seen as a change)."""
    run = fingerprint(run_dir)
    name = _compare_to(run_dir) if compare_to is ... else compare_to
    return {"code": code_hash(), "run": run, "baseline": _baseline(run_dir, name)}


def summarise(run: Run, baseline: Run | None) -> dict:
    """The index row's facts, before any formatting or language."""
    from pipeline.report.checks import RULES, applicable, run_checks

    cfg, prov = run.config, run.provenance
    findings = run_checks(run, applicable(RULES, baseline), baseline=baseline)
    ends = [s.ended_utc for s in prov.stages.values() if s.ended_utc]
    best = tables.best_validation(run) or {}
    train_cfg, model = cfg.get("train") or {}, cfg.get("model") or {}
    ppl = run.perplexity.perplexity

    def number(x):
        return float(x) if isinstance(x, (int, float)) and x == x else None  # NaN: no figure

    return {
        "name": run.name,
        "status": run.status,
        "has_train": "train" in run.stages,
        "n_errors": sum(f.severity == "error" for f in findings),
        "n_warnings": sum(f.severity == "warning" for f in findings),
        "steps_done": run.steps_done,
        "steps_planned": run.steps_planned,
        "ended_utc": max(ends) if ends else None,
        "commit": prov.git.commit,
        "device": compare._device(run) if prov else None,
        "params": run.done.parameters.total,
        "shape": f"{model.get('dim')}×{model.get('layers')}",
        "batch": (train_cfg.get("batch_size") or 0) * (train_cfg.get("grad_accum") or 1) * (run.done.world_size or 1),
        "lr": train_cfg.get("lr"),
        "best_val_ppl": number(best.get("val_perplexity")),
        "best_val_acc": number(best.get("val_accuracy")),
        "test_ppl": number(ppl),
        "train_s": tables.train_time(run).get("total_s"),
    }


def write(run_dir: Path, run: Run, baseline: Run | None, since: dict) -> records.Summary:
    """Write the summary of `run` (read after `since = sources(run_dir)` was taken) atomically."""
    summary = records.Summary.model_validate({**summarise(run, baseline), "sources": since})
    try:
        records.SUMMARY.write(run_dir, summary)
    except OSError as exc:  # a read-only run (someone else's, a mounted archive): the summary is still right
        log.info("summary.json not written in %s: %s", run_dir, exc)
    return summary


def current(run_dir: Path) -> records.Summary:
    """The run's summary: summary.json when it was computed from exactly the files and code there are now,
    else computed again (each log parsed once per process, loader cache) and written back."""
    run_dir = Path(run_dir)
    cached = records.SUMMARY.read(run_dir)
    base = cached.sources.get("baseline") if cached else None
    # Same run files means the same config.yaml, hence the same compare_to: no YAML to parse on this path.
    if cached and cached.sources == sources(run_dir, base.get("name") if isinstance(base, dict) else None):
        return cached
    now = sources(run_dir)
    run = load_run(run_dir)
    base, baseline = now["baseline"], None
    if base and base["files"] is not None:
        base_dir = Path(run_dir).parent / base["name"]
        if base.get("aggregate"):  # the member with this run's seed, as the report's own checks pick it
            from pipeline.report.aggregate import matching_member

            base_dir = matching_member(base_dir, (run.config.get("train") or {}).get("seed"))
        baseline = load_run(base_dir) if base_dir is not None else None
    return write(run_dir, run, baseline, now)
