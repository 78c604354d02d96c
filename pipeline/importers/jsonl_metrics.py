"""JSON lines in this project's own keys: what a training script of yours writes for `train.logs: {from: jsonl}`.

    <dir>/metrics.jsonl (or any *.jsonl file named as SRC / train.logs.path)
    {"step": 10, "loss": 4.21, "lr": 0.001, "tokens": 20480, "my_counter": 3}
    {"step": 20, "val_loss": 4.05, "val_perplexity": 57.4}

One JSON object per line. `step` (optimizer steps done, an integer >= 0) is required on every line; the other keys
are those of `train/metrics.jsonl` and `train/validation.jsonl` (README, "Run directory"; same units: loss in
nats/token, `tokens` seen so far, `tokens_per_s`, `step_time_s`, …). A line with `loss` (or any other training key)
becomes a metrics row, a line with `val_*` keys a validation row (one line may hold both); any other number is kept
under its own name in train/extra.jsonl, and values that are not numbers are counted as not carried. The torn last
line of a killed job is skipped with a warning, as for every importer (pipeline/jsonl.py).
"""

from __future__ import annotations

from pathlib import Path

from pipeline import records
from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, extra_row, number, read_jsonl, required_step

_NOT_LOGGED = {"step", "segment", "time_utc", "dataset"}  # ours to set, or not a metric
TRAIN_KEYS = tuple(k for k in records.columns(records.MetricRow) if k not in _NOT_LOGGED)
VAL_KEYS = tuple(k for k in records.columns(records.ValidationRow) if k not in _NOT_LOGGED and k != "epoch")
_OURS = frozenset((*TRAIN_KEYS, *VAL_KEYS, *_NOT_LOGGED))  # keys with a place of ours (built once, not per line)


class JsonlMetrics(Adapter):
    name = "jsonl"
    description = "JSON lines in labnote's metric keys (step, loss, lr, val_loss, …): a *.jsonl file or its folder"
    find = Find("*.jsonl")

    @classmethod
    def detect(cls, src: Path) -> bool:
        return False  # any folder may hold some .jsonl file: FROM=auto never guesses this format, name it

    def records(self, path: Path, imp: Imported):
        if path.is_file() and path.stat().st_size == 0:
            return []  # a script that has not logged its first step yet (a live look, a crash before it)
        return [(f"{path}:{lineno}", obj) for lineno, obj in read_jsonl(path, imp.warnings)]

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        step = required_step(record, "step", where)
        train = {k: number(record[k], where, k) for k in TRAIN_KEYS if record.get(k) is not None}
        val = {k: number(record[k], where, k) for k in VAL_KEYS if record.get(k) is not None}
        rest = {k: v for k, v in record.items() if k not in _OURS}
        if extra := extra_row(step, "train", imp.numbers(rest)):
            imp.extra.append(extra)
        for key in ("tokens",):  # integer columns: a script may write 2048.0
            if isinstance(train.get(key), float) and train[key].is_integer():
                train[key] = int(train[key])
        epoch = train.get("epoch")
        only_epoch = set(train) <= {"epoch"}
        return Rows(
            metrics=None if only_epoch else {"step": step, **train},
            validation={"step": step, "epoch": epoch, **val} if val else None,
        )

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        imp.steps_done = max((r["step"] for r in imp.metrics), default=0)
