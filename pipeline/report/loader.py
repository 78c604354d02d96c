"""Read a run directory into tidy pandas tables and typed records. Reads files only; never imports torch.

A damaged file (a torn last JSONL line from a killed run, unreadable JSON) does not stop the report:
it is recorded in `Run.problems` and the checks turn it into a finding.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pipeline import records
from pipeline.rundir import RunDir
from pipeline.stages import active_stages

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported where a frame is built, not with the module: `make index` reads current summaries through
# summary.py -> this module and never a frame, and pandas is ≈ 0.8 s of its start-up.

# Table columns: the keys each JSONL row declares (pipeline/records.py).
METRIC_COLUMNS = [c for c in records.columns(records.MetricRow) if c != "time_utc"]
VALIDATION_COLUMNS = [c for c in records.columns(records.ValidationRow) if c != "time_utc"]
TASK_COLUMNS = records.columns(records.TaskRow)


RECORD_FIELDS = {"done": records.TrainDone, "plan": records.Plan, "provenance": records.Provenance,
                 "resolve": records.Resolve, "prepared": records.PreparedStats, "perplexity": records.Perplexity,
                 "harness_timing": records.HarnessTiming, "bench": records.BenchSummary,
                 "imported": records.ImportRecord}  # fmt: skip


def _frame(**kwargs) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(**kwargs)


@dataclass
class Run:
    """One run directory, read. Every JSON file is its typed record (`pipeline/records.py`): a missing or damaged
    file is an empty record — falsy, with every field None — so readers ask `if run.done:` and read
    `run.done.status` without guards."""

    name: str
    root: Path
    config: dict
    metrics: pd.DataFrame
    validation: pd.DataFrame
    validation_sets: dict = field(default_factory=dict)  # imports with several eval sets: name -> frame (the others)
    done: records.TrainDone = field(default_factory=records.TrainDone.missing)
    plan: records.Plan = field(default_factory=records.Plan.missing)
    provenance: records.Provenance = field(default_factory=records.Provenance.missing)
    resolve: records.Resolve = field(default_factory=records.Resolve.missing)
    prepared: records.PreparedStats = field(default_factory=records.PreparedStats.missing)
    perplexity: records.Perplexity = field(default_factory=records.Perplexity.missing)
    harness: pd.DataFrame = field(default_factory=lambda: _frame(columns=TASK_COLUMNS))
    harness_timing: records.HarnessTiming = field(default_factory=records.HarnessTiming.missing)
    samples: dict = field(default_factory=dict)  # task -> lm-eval's per-item rows (eval/samples/<task>.jsonl)
    ppl_items: list[dict] = field(default_factory=list)  # eval/perplexity_items.jsonl: per-sequence loss sums
    bench: records.BenchSummary = field(default_factory=records.BenchSummary.missing)
    bench_rows: list[dict] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    imported: records.ImportRecord = field(default_factory=records.ImportRecord.missing)
    problems: list[str] = field(default_factory=list)
    running: bool = False  # `make peek`: the train stage is still at work (its lock is held)

    def __setattr__(self, name: str, value) -> None:
        # Runs built or changed by hand (tests, tools) may use plain dicts or None: they become typed records.
        kind = RECORD_FIELDS.get(name)
        if kind is not None and not isinstance(value, kind):
            value = kind.missing() if value is None else kind.model_validate(value)
        object.__setattr__(self, name, value)

    @property
    def steps_planned(self) -> int | None:
        if self.imported:  # only what the source recorded (or STEPS=), never a stand-in
            return self.plan.steps_planned
        return self.done.steps_planned or self.plan.steps_planned or (self.config.get("train") or {}).get("steps")

    @property
    def steps_done(self) -> int:
        if self.done:
            return int(self.done.steps_done or 0)
        return int(self.metrics["step"].max()) if len(self.metrics) else 0

    @property
    def vocab_size(self) -> int | None:
        return self.prepared.vocab_size or (self.config.get("model") or {}).get("vocab_size")

    @property
    def stages(self) -> list[str]:
        if self.imported:
            return list(self.imported.provides)
        return active_stages({**self.config, "imported": None})

    @property
    def status(self) -> str:
        """completed / partial / failed / not started, from the data, never from the config alone."""
        if "train" not in self.stages:  # a sweep-only (or imported eval-only) run: done when its results exist
            return "completed" if self.bench or len(self.harness) else "not started"
        if self.running and not self.done:
            return "running"
        if self.done.status in ("stopped_nonfinite", "failed"):
            return "failed"
        if self.done.status in ("failed_before_first_step", "early_stopped"):
            return self.done.status  # what the imported source itself says ended the run
        if not len(self.metrics) and not self.done:
            return "not started"
        planned = self.steps_planned
        if planned is None and self.imported:
            return "unknown"  # the source does not say how long the run was meant to be
        if self.done.status == "completed" and planned and self.steps_done >= planned:
            return "completed"
        if self.done.status == "completed" and planned is None and self.done.external:
            return "completed"  # a train.command that exited 0, with no planned length given anywhere
        return "partial"


def segments(frame: pd.DataFrame) -> list[dict]:
    """Stretches of training between (re)starts (numbered from 1), from the rows in file order: first/last
    step, rows, and the throughput without each segment's first row (it includes start-up, compilation and warm-up)."""
    out = []
    for seg, rows in frame.groupby("segment", sort=True):
        tps = rows["tokens_per_s"].dropna().iloc[1:]
        out.append(
            {
                "segment": int(seg) + 1,
                "first_step": int(rows["step"].iloc[0]),
                "last_step": int(rows["step"].iloc[-1]),
                "rows": len(rows),
                "tokens_per_s_median": float(tps.median()) if len(tps) else None,
            }
        )
    return out


def _number_segments(frame: pd.DataFrame) -> pd.DataFrame:
    """Our trainer writes `segment`; imported logs have it too. Otherwise a step not above the one before
    starts a new segment (a restart that appended to the same log)."""
    if frame["segment"].isna().all():
        frame["segment"] = (frame["step"].diff() <= 0).cumsum()
    frame["segment"] = frame["segment"].ffill().fillna(0).astype(int)
    return frame


def read_rows(spec: records.RunFile, run_root: Path, columns: list[str], problems: list[str],
              raw: list | None = None, frame: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """Rows sorted by step, one per step (a step logged twice keeps its last value); `raw`, when given,
    receives the frame in file order before that. Damaged lines: the one rule in pipeline/jsonl.py. `frame`:
    the file's rows when the caller has read them already."""
    import pandas as pd

    frame = spec.frame(run_root, problems) if frame is None else frame
    for col in columns:
        if col not in frame:
            frame[col] = pd.Series(dtype="float64")
        elif not pd.api.types.is_numeric_dtype(frame[col]):
            # Non-finite values are written as the strings "nan"/"inf"; to_numeric maps them back.
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if len(frame):
        if "segment" in columns:
            frame = _number_segments(frame)
        if raw is not None:
            raw.append(frame)
        steps = frame["step"].to_numpy()
        if not (steps[1:] > steps[:-1]).all():  # else already one row per step, in order: no copy
            frame = frame.sort_values("step", kind="stable").drop_duplicates("step", keep="last")
            frame = frame.reset_index(drop=True)
    return frame


def read_tasks(run_root: Path, problems: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(records.TASKS.rows(run_root, problems, key="task"), columns=TASK_COLUMNS)
    for col in ("value", "stderr", "chance"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def read_validation(root: Path, problems: list[str]) -> dict:
    """`validation`: the rows without a `dataset` (or, when every row names one, the first set's), so curves and
    checks read one curve; `validation_sets`: every other eval set's rows (imports with several eval sets)."""
    import pandas as pd

    rows = records.VALIDATION.frame(root, problems)
    named = rows["dataset"].map(lambda d: isinstance(d, str) and d != "") if "dataset" in rows else None
    sets = sorted(set(rows["dataset"][named])) if named is not None else []
    if not sets:
        return {"validation": read_rows(records.VALIDATION, root, VALIDATION_COLUMNS, problems, frame=rows)}
    main = None if not named.all() else sets[0]

    def frame(name):
        which = rows["dataset"].isna() if name is None else rows["dataset"] == name
        sel = rows[which].reindex(columns=VALIDATION_COLUMNS).reset_index(drop=True)
        for col in VALIDATION_COLUMNS:
            if col != "dataset":
                sel[col] = pd.to_numeric(sel[col], errors="coerce")
        return sel.sort_values("step", kind="stable").drop_duplicates("step", keep="last").reset_index(drop=True)

    return {"validation": frame(main), "validation_sets": {name: frame(name) for name in sets if name != main}}


# Not part of what a run's files say: locks, the scheduler's folders, earlier outputs and the caches of the report.
UNREAD = (".lock", ".lock.info", ".cache", "jobs", "archive", "logs", "summary.json")


def fingerprint(run_dir: Path) -> list[list]:
    """(path, size, mtime in ns, inode) of every file of the run the loader can read, sorted: any write into the
    run (an append, an atomic replace, a new or deleted file) changes it. Cheap: stat calls only."""
    root, out = Path(run_dir), []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in UNREAD]
            files = [f for f in files if f not in UNREAD and not f.startswith(".summary.json.")]
        for name in files:
            path = Path(folder) / name
            with contextlib.suppress(FileNotFoundError):  # a file removed meanwhile: the next look sees it gone
                st = path.stat()
                out.append([str(rel / name), st.st_size, st.st_mtime_ns, st.st_ino])
    return sorted(out)


_CACHE: OrderedDict[Path, tuple[list, Run]] = OrderedDict()
CACHE_RUNS = 4  # loaded runs kept per process (a 1M-step run's frames are ≈ 150 MB)


def load_run(run_dir: Path) -> Run:
    """The run, read once per process: a second call returns (a copy of) the same Run while none of its files
    changed (`fingerprint`), so `make index`, `make compare` and `compare_to` baselines parse each log once."""
    key = Path(run_dir).resolve()
    stamp = fingerprint(key)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        _CACHE.move_to_end(key)
        return _copy(hit[1], Path(run_dir))
    run = _load_run(Path(run_dir))
    _CACHE[key] = (stamp, run)
    while len(_CACHE) > CACHE_RUNS:
        _CACHE.popitem(last=False)
    return _copy(run, Path(run_dir))


def _copy(run: Run, root: Path) -> Run:
    # The frames and records are shared (report code copies a frame before changing it); the list is the caller's.
    out = copy.copy(run)
    object.__setattr__(out, "root", root)
    object.__setattr__(out, "problems", list(run.problems))
    return out


def _load_run(run_dir: Path) -> Run:
    run, problems, raw = RunDir(Path(run_dir)), [], []
    config = yaml.safe_load(run.config.read_text(encoding="utf-8")) if run.config.is_file() else {}
    checkpoints = [
        {
            "step": int(p.name),
            "path": f"checkpoints/{p.name}",
            "size_bytes": sum(f.stat().st_size for f in p.rglob("*") if f.is_file()),
        }
        for p in run.checkpoint_dirs()
    ]
    root = run.root
    problems += records.repairs(root)  # damage found and healed by a stage (pipeline/records.py)
    return Run(
        name=config.get("name", root.name),
        root=root,
        config=config,
        metrics=read_rows(records.METRICS, root, METRIC_COLUMNS, problems, raw),
        **read_validation(root, problems),
        done=records.TRAIN_DONE.read(root, problems),
        plan=records.PLAN.read(root, problems),
        provenance=records.PROVENANCE.read(root, problems),
        resolve=records.RESOLVE.read(root, problems),
        prepared=records.PREPARED_STATS.read(root, problems),
        perplexity=records.PERPLEXITY.read(root, problems),
        harness=read_tasks(root, problems),
        harness_timing=records.HARNESS_TIMING.read(root, problems),
        samples=records.read_samples(root, problems),
        ppl_items=records.PERPLEXITY_ITEMS.rows(root, problems, key="loss_sum"),
        checkpoints=checkpoints,
        bench=records.BENCH_SUMMARY.read(root, problems),
        bench_rows=records.BENCH_RESULTS.rows(root, problems, key="variant"),
        segments=segments(raw[0]) if raw else [],
        imported=records.IMPORT.read(root, problems),
        problems=problems,
    )
