"""The training lifecycle: early stopping, the best checkpoint, and continuing a finished run made longer.

Early stopping (`train.early_stopping: {metric, patience, min_delta}`) and the best checkpoint
(`train.keep_best: {metric}`) watch the validation passes after step 0 (the untrained baseline is not a candidate).
A pass improves on the best so far when it is lower (higher for accuracy) by more than `min_delta`; after
`patience` passes without one, training stops at that step, saves a checkpoint and writes `early_stopped` with the
reason into train/DONE. The state of both is replayed from train/validation.jsonl on resume (the log is cut back to
the checkpoint first), so a resumed run stops where an uninterrupted one would.

>>> from pipeline.config.schema import EarlyStopping
>>> life = Lifecycle(EarlyStopping(patience=2, min_delta=0.01), None)
>>> passes = ((10, 3.0), (20, 2.995), (30, 2.9), (40, 2.95), (50, 2.92))
>>> [life.observe({"step": s, "val_loss": v})[1] is not None for s, v in passes]
[False, False, False, False, True]

Continuing: when the newest checkpoint was made from the same train inputs apart from `train.steps` /
`train.epochs` (`pipeline.stages.continuation_hash`) and the new length is longer than the checkpoint's step, the
train stage resumes from it instead of archiving the run; `continuation` records the finished segment in
train/plan.json and train/DONE `continuations`, and moves the stale eval outputs to archive/.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline import records
from pipeline.config.schema import EarlyStopping, Experiment, KeepBest
from pipeline.rundir import RunDir

HIGHER_IS_BETTER = {"val_accuracy"}
BEST = "best"  # checkpoints/best/
BEST_FILE = "best.json"  # in checkpoints/best/: step, metric, value


def _value(record: dict, metric: str) -> float | None:
    value = record.get(metric)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def better(metric: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if metric not in HIGHER_IS_BETTER else value > best + min_delta


@dataclass
class Watch:
    metric: str
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    since_best: int = 0

    def observe(self, record: dict) -> bool:
        """Whether this pass improves on the best so far (non-finite values never do)."""
        value = _value(record, self.metric)
        if value is not None and better(self.metric, value, self.best, self.min_delta):
            self.best, self.best_step, self.since_best = value, int(record["step"]), 0
            return True
        self.since_best += 1
        return False


@dataclass
class Lifecycle:
    early: EarlyStopping | None
    keep: KeepBest | None
    stopping: Watch | None = field(init=False, default=None)
    keeping: Watch | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.early is not None:
            self.stopping = Watch(self.early.metric, self.early.min_delta)
        if self.keep is not None:
            self.keeping = Watch(self.keep.metric)

    @classmethod
    def replayed(cls, cfg: Experiment, rows: list[dict]) -> Lifecycle:
        life = cls(cfg.train.early_stopping, cfg.train.keep_best)
        for row in rows:
            life.observe(row)
        return life

    def observe(self, record: dict) -> tuple[bool, str | None]:
        """(save the best checkpoint now, why training stops now or None) for one validation pass."""
        if int(record.get("step") or 0) == 0:
            return False, None
        save_best = self.keeping.observe(record) if self.keeping else False
        stop = None
        if self.stopping is not None:
            self.stopping.observe(record)
            if self.stopping.since_best >= self.early.patience:
                w = self.stopping
                stop = (
                    f"early stopping: {w.metric} did not improve by more than {w.min_delta:g} for {w.since_best} "
                    f"validation passes (best {w.best:.6g} at step {w.best_step})"
                    if w.best is not None
                    else f"early stopping: no finite {w.metric} in {w.since_best} validation passes"
                )
        return save_best, stop

    def best_info(self, step: int) -> dict:
        return {"step": step, "metric": self.keeping.metric, "value": self.keeping.best}


def write_best_info(folder, info: dict) -> None:
    (folder / BEST_FILE).write_text(json.dumps(info) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- continuing a longer run
def planned_steps(cfg: Experiment, steps_per_epoch: int | None) -> int | None:
    tc = cfg.train
    return tc.steps or (tc.epochs * steps_per_epoch if steps_per_epoch else None)


def continuation(run: RunDir, cfg: Experiment, train_hash: str, continuation_hash: str) -> list[dict] | None:
    """The earlier segments when this launch continues a run whose only change is a longer length, else None
    (then the usual rule applies: resume with the same inputs, archive with others)."""
    from pipeline.train.checkpoint import load_train_state, newest_intact

    latest = newest_intact(run)
    if latest is None:
        return None
    state = load_train_state(latest)
    if state.get("train_hash") == train_hash or state.get("continuation_hash") != continuation_hash:
        return None
    plan = records.PLAN.read(run.root, [])
    total = planned_steps(cfg, plan.steps_per_epoch)
    if total is None or total <= int(state["step"]):
        return None  # shorter, or no longer than what was trained: not a continuation
    done = records.TRAIN_DONE.read(run.root, [])
    earlier = list(plan.get("continuations") or [])
    earlier.append(
        {
            "steps_planned": done.steps_planned or plan.steps_planned,
            "steps_done": int(state["step"]),
            "status": done.status or "interrupted",
            "train_hash": state.get("train_hash"),
            "continued_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    if run.eval.exists():  # measured on the shorter run: kept, out of the way of the new eval stage
        dest = run.archive / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run.eval), dest / run.eval.name)
    run.train_done.unlink(missing_ok=True)
    return earlier


def carried_continuations(run: RunDir, train_hash: str) -> list[dict]:
    """The segments recorded by an earlier launch of this same continuation (a resume after a kill)."""
    plan = records.PLAN.read(run.root, [])
    return list(plan.get("continuations") or []) if plan and plan.train_hash == train_hash else []
