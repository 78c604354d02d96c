"""What every importer returns, and the strict readers they share.

An importer reads another tool's files and returns an `Imported`: rows already in this project's metric
keys (README, "Run directory"), plus what it could recover of the run's config. It never fills a gap with
a guess: a field the source did not record stays missing and the report prints "—".

A source that cannot be read raises `SourceError`, one line naming the file and line:
`error: out/metrics.jsonl:57: not valid JSON (Expecting ',' delimiter)`. The one exception is a torn
last line (a job killed mid-write): it is skipped and the import records a warning, because such runs
are exactly the ones a report must describe.
"""

from __future__ import annotations

import collections
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline import jsonl

# Not the importers' own: re-exported only because pipeline/report/render.py still imports it from here.
from pipeline.errors import UserError


def optional_package(module: str, fmt: str):
    """An importer's reader package (tensorboard, wandb): installed by `make venv` from requirements-test.txt,
    not in the image; without it the import is one line, not a traceback."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise UserError(
            f"FROM={fmt}: reading these files needs the '{package}' package "
            f"(pip install -r requirements-test.txt, or run `make import` in the venv)"
        ) from None


class SourceError(UserError):
    """A file of the imported run is missing, malformed or lacks a required field."""


@dataclass
class Imported:
    format: str
    source: Path
    files: list[Path] = field(default_factory=list)  # every file read (hashed into import.json)
    metrics: list[dict] = field(default_factory=list)  # train/metrics.jsonl rows, in the source's order
    validation: list[dict] = field(default_factory=list)  # train/validation.jsonl rows
    tasks: list[dict] = field(default_factory=list)  # eval/tasks.jsonl rows (normalised lm-eval results)
    lm_eval: dict | None = None  # lm-eval's results object, copied to eval/lm_eval.json
    eval_info: dict = field(default_factory=dict)  # step evaluated, model, time, device (eval/harness_timing.json)
    steps_planned: int | None = None
    source_config: dict = field(default_factory=dict)  # the tool's own config, verbatim
    model: dict = field(default_factory=dict)  # ModelConfig fields recovered from it
    train: dict = field(default_factory=dict)  # TrainConfig fields recovered from it
    data: dict = field(default_factory=dict)  # {"source": name, "tokenizer": name, "seq_len": n}
    summary: dict = field(default_factory=dict)  # the tool's end-of-run summary, verbatim
    recovered: dict = field(default_factory=dict)  # environment facts the source states (provenance)
    warnings: list[str] = field(default_factory=list)
    # What the tool records about itself (never the last row that happens to carry a loss):
    steps_done: int | None = None  # its own step counter (global_step, Lightning's step + 1, Lingua's step lines)
    status: str | None = None  # set only where the source says more than steps done vs planned (early_stopped, …)
    status_why: str | None = None  # the source's own words for that status
    extra: list[dict] = field(default_factory=list)  # train/extra.jsonl: logged series with no key of ours
    not_carried: dict[str, int] = field(default_factory=dict)  # "name (what it is)" -> rows the import could not carry
    runs: list[dict] = field(default_factory=list)  # several runs in SRC: what tells them apart, which was read
    events: list[dict] = field(default_factory=list)  # what the log says happened (evaluation, reload, checkpoint)

    def drop(self, name: str, what: str, rows: int = 1) -> None:
        """A logged value that has no place in the run directory (a histogram, an image, a text, a value that is
        not a number): counted under its name and kind, for the check `metrics_not_imported` and the report."""
        label = f"{name} ({what})"
        self.not_carried[label] = self.not_carried.get(label, 0) + rows

    def numbers(self, values: dict, skip: tuple[str, ...] = ()) -> dict:
        """The numeric values of a logged record; every other non-empty value (outside `skip`) is `drop`ped."""
        kept = {}
        for key, value in values.items():
            if is_number(value):
                kept[key] = value
            elif value is not None and value != "" and key not in skip:
                self.drop(key, kind_of(value))
        return kept

    @property
    def provides(self) -> list[str]:
        trained = self.metrics or self.validation or self.summary or self.status == "failed_before_first_step"
        return (["train"] if trained else []) + (["eval"] if self.tasks else [])

    @property
    def done(self) -> int:
        """Steps done: the tool's own counter where it records one, else the highest step logged."""
        if self.steps_done is not None:
            return self.steps_done
        return max((r["step"] for r in self.metrics), default=0)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def kind_of(value) -> str:
    """What a logged value that is not a number is, in a word (for the not-carried list)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return str(value.get("_type") or "object")
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def extra_row(step: int | None, source: str, values: dict, **labels) -> dict | None:
    """A train/extra.jsonl row: the series a record logged that have no key of ours, under their own names."""
    values = {k: v for k, v in values.items() if is_number(v)}
    if not values:
        return None
    return {"step": step, "source": source, **{k: v for k, v in labels.items() if v is not None}, **values}


def find_key(tree, names: tuple[str, ...]):
    """The first value under any of `names` at any depth of a config (e.g. `cfg.trainer.max_steps`), with its
    dotted path; (None, None) when absent."""
    stack = collections.deque([("", tree)])  # breadth first: the shallowest match wins
    while stack:
        prefix, node = stack.popleft()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in names and v is not None and not isinstance(v, (dict, list)):
                    return v, prefix + str(k)
            stack.extend((f"{prefix}{k}.", v) for k, v in node.items() if isinstance(v, dict))
    return None, None


def planned_steps(tree, names: tuple[str, ...] = ("max_steps",)) -> tuple[int | None, str | None]:
    """A positive step count under `names` at any depth (Lightning's -1 / HF's 0 mean "not set")."""
    value, where = find_key(tree, names)
    if is_number(value) and value > 0 and float(value).is_integer():
        return int(value), where
    return None, None


def rel(path: Path, root: Path) -> str:
    """A file's name relative to the import source, for messages and import.json."""
    try:
        return str(path.relative_to(root)) if root.is_dir() else path.name
    except ValueError:
        return str(path)


def read_jsonl(path: Path, warnings: list[str]) -> list[tuple[int, dict]]:
    """(line number, object) pairs, by the one JSONL rule (pipeline/jsonl.py): a torn last line is skipped with a
    warning, any other damaged line raises."""
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    try:
        rows = jsonl.read_strict(path, warnings)
    except jsonl.JsonlError as exc:
        raise SourceError(str(exc)) from None
    if not rows:
        raise SourceError(f"{path}: no records (empty file)")
    return rows


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise SourceError(f"{path}: expected a JSON object at the top level, got {type(obj).__name__}")
    return obj


def read_yaml(path: Path) -> dict:
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SourceError(
            f"{path}:{mark.line + 1 if mark else 1}: invalid YAML ({getattr(exc, 'problem', None) or exc})"
        ) from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SourceError(f"{path}: expected a mapping at the top level, got {type(obj).__name__}")
    return obj


def number(value, where: str, key: str | None = None) -> float | int | None:
    """A recorded number as is (ints stay ints); None/NaN strings pass as missing; anything else raises, naming
    `where` (and `key`: given apart, the message is built only on an error, not once per value read)."""
    if value is None or type(value) in (int, float):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a subclass (numpy's float64)
        return value
    if isinstance(value, str):
        for parse in (int, float):  # "10" stays an int, "4.2865" / "nan" become floats
            try:
                return parse(value)
            except ValueError:
                continue
    raise SourceError(f"{where}{f': {key}' if key is not None else ''}: expected a number, got {value!r}")


def required_step(obj: dict, key: str, where: str) -> int:
    if key not in obj:
        raise SourceError(f"{where}: no '{key}' (the step number every record needs)")
    step = number(obj[key], where, key)
    if step is None or (isinstance(step, float) and (not math.isfinite(step) or not step.is_integer())) or step < 0:
        raise SourceError(f"{where}: {key}: expected a step number >= 0, got {obj[key]!r}")
    return int(step)


def assign_segments(rows: list[dict], starts: list[int] = ()) -> list[dict]:
    """Number the training segments: a step that is not above the previous one means the run restarted
    (resumed from a checkpoint, or relaunched) and a new segment begins; so does each of `starts` (the index of
    the first row of a later file: a resumed run's new logger version or event file)."""
    segment, previous, starts = 0, None, set(starts)
    for i, row in enumerate(rows):
        if previous is not None and (row["step"] <= previous or i in starts):
            segment += 1
        row["segment"] = segment
        previous = row["step"]
    return rows


def array_lines(text: str, key: str) -> list[int]:
    """Line number of each element of the JSON array under `"key":`, so errors can name a line."""
    match = re.search(rf'"{re.escape(key)}"\s*:\s*\[', text)
    if not match:
        return []
    decoder, pos, lines = json.JSONDecoder(), match.end(), []
    line, counted = 1, 0  # the line of text[counted]: newlines are counted once each, not from the start per entry
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return lines
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return lines
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
