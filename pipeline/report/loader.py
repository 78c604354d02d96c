"""Read a run directory into tidy pandas tables and plain dicts. Reads files only; never imports torch.

A damaged file (a torn last JSONL line from a killed run, unreadable JSON) does not stop the report:
it is recorded in `Run.problems` and the checks turn it into a finding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from pipeline import records
from pipeline.rundir import RunDir

METRIC_COLUMNS = [
    "step",
    "epoch",
    "loss",
    "grad_norm",
    "lr",
    "tokens",
    "tokens_per_s",
    "step_time_s",
    "data_time_s",
    "mem_peak_gib",
    "segment",
    # optional: imported runs (Lingua) and the train stage's FLOP accounting
    "flops_per_token",
    "flops_per_s",
    "mfu",
    "mfu_datasheet",
    "mem_peak_pct",
    "mem_reserved_gib",
    "power_w",
]
VALIDATION_COLUMNS = ["step", "epoch", "val_loss", "val_perplexity", "val_accuracy", "val_tokens"]
TASK_COLUMNS = [
    "task",
    "metric",
    "filter",
    "value",
    "stderr",
    "n",
    "n_original",
    "num_fewshot",
    "higher_is_better",
    "chance",
]


@dataclass
class Run:
    name: str
    root: Path
    config: dict
    metrics: pd.DataFrame
    validation: pd.DataFrame
    done: dict | None = None
    plan: dict | None = None
    provenance: dict | None = None
    resolve: dict | None = None
    prepared: dict | None = None
    perplexity: dict | None = None
    harness: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TASK_COLUMNS))
    harness_timing: dict | None = None
    bench: dict | None = None
    bench_rows: list[dict] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)
    imported: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def steps_planned(self) -> int | None:
        if self.imported is not None:  # only what the source recorded (or STEPS=), never a stand-in
            return (self.plan or {}).get("steps_planned")
        for source in (self.done, self.plan):
            if source and source.get("steps_planned"):
                return source["steps_planned"]
        return self.config.get("train", {}).get("steps")

    @property
    def steps_done(self) -> int:
        if self.done:
            return int(self.done.get("steps_done", 0))
        return int(self.metrics["step"].max()) if len(self.metrics) else 0

    @property
    def vocab_size(self) -> int | None:
        return (self.prepared or {}).get("vocab_size") or self.config.get("model", {}).get("vocab_size")

    @property
    def stages(self) -> list[str]:
        if self.imported is not None:
            return list(self.imported.get("provides", []))
        declared = self.config.get("stages")
        if declared is not None:
            return list(declared)
        return ["prepare", "train", "eval"] + (["bench"] if self.config.get("bench") else [])

    @property
    def status(self) -> str:
        """completed / partial / failed / not started, from the data, never from the config alone."""
        if "train" not in self.stages:  # a sweep-only (or imported eval-only) run: done when its results exist
            return "completed" if self.bench or len(self.harness) else "not started"
        if self.done and self.done.get("status") == "stopped_nonfinite":
            return "failed"
        if not len(self.metrics) and not self.done:
            return "not started"
        planned = self.steps_planned
        if planned is None and self.imported is not None:
            return "unknown"  # the source does not say how long the run was meant to be
        if self.done and self.done.get("status") == "completed" and planned and self.steps_done >= planned:
            return "completed"
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


def read_jsonl(path: Path, columns: list[str], problems: list[str], raw: list | None = None) -> pd.DataFrame:
    """Rows sorted by step, one per step (a step logged twice keeps its last value); `raw`, when given,
    receives the frame in file order before that."""
    rows = []
    if path.is_file():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                where = "last line (truncated write?)" if lineno == len(lines) else f"line {lineno}"
                problems.append(f"{path.parent.name}/{path.name}: {where} is not valid JSON and was skipped")
                continue
            if not isinstance(obj, dict) or "step" not in obj:
                problems.append(f"{path.parent.name}/{path.name}: line {lineno} has no 'step' and was skipped")
                continue
            rows.append(obj)
    frame = pd.DataFrame(rows)
    for col in columns:
        if col not in frame:
            frame[col] = pd.Series(dtype="float64")
        # Non-finite values are written as the strings "nan"/"inf"; to_numeric maps them back.
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if len(frame):
        if "segment" in columns:
            frame = _number_segments(frame)
        if raw is not None:
            raw.append(frame)
        frame = frame.sort_values("step", kind="stable").drop_duplicates("step", keep="last").reset_index(drop=True)
    return frame


def _read_lines(path: Path, problems: list[str]) -> list[dict]:
    rows = []
    if path.is_file():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                problems.append(f"{path.parent.name}/{path.name}: line {lineno} is not valid JSON and was skipped")
    return rows


def read_tasks(path: Path, problems: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(_read_lines(path, problems), columns=TASK_COLUMNS)
    for col in ("value", "stderr", "chance"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def read_json(path: Path, problems: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        problems.append(f"{path.relative_to(path.parents[1])}: not valid JSON ({exc.msg}); ignored")
        return None


def load_run(run_dir: Path) -> Run:
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
    problems += records.repairs(run.root)  # damage found and healed by a stage (pipeline/records.py)
    return Run(
        name=config.get("name", run.root.name),
        root=run.root,
        config=config,
        metrics=read_jsonl(run.metrics, METRIC_COLUMNS, problems, raw),
        validation=read_jsonl(run.validation, VALIDATION_COLUMNS, problems),
        done=read_json(run.train_done, problems),
        plan=read_json(run.plan, problems),
        provenance=read_json(run.provenance, problems),
        resolve=read_json(run.root / "resolve.json", problems),
        prepared=read_json(run.prepared / "stats.json", problems),
        perplexity=read_json(run.perplexity, problems),
        harness=read_tasks(run.eval / "tasks.jsonl", problems),
        harness_timing=read_json(run.eval / "harness_timing.json", problems),
        checkpoints=checkpoints,
        bench=read_json(run.root / "bench" / "summary.json", problems),
        bench_rows=_read_lines(run.root / "bench" / "results.jsonl", problems),
        segments=segments(raw[0]) if raw else [],
        imported=read_json(run.root / "import" / "import.json", problems),
        problems=problems,
    )
