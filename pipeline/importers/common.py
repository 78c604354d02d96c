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

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline import jsonl

# Not the importers' own: re-exported only because pipeline/report/render.py still imports it from here.
from pipeline.errors import UserError


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

    @property
    def provides(self) -> list[str]:
        return (["train"] if self.metrics or self.validation else []) + (["eval"] if self.tasks else [])


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


def number(value, where: str) -> float | int | None:
    """A recorded number as is (ints stay ints); None/NaN strings pass as missing; anything else raises."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        for parse in (int, float):  # "10" stays an int, "4.2865" / "nan" become floats
            try:
                return parse(value)
            except ValueError:
                continue
    raise SourceError(f"{where}: expected a number, got {value!r}")


def required_step(obj: dict, key: str, where: str) -> int:
    if key not in obj:
        raise SourceError(f"{where}: no '{key}' (the step number every record needs)")
    step = number(obj[key], f"{where}: {key}")
    if step is None or (isinstance(step, float) and (not math.isfinite(step) or not step.is_integer())) or step < 0:
        raise SourceError(f"{where}: {key}: expected a step number >= 0, got {obj[key]!r}")
    return int(step)


def assign_segments(rows: list[dict]) -> list[dict]:
    """Number the training segments: a step that is not above the previous one means the run restarted
    (resumed from a checkpoint, or relaunched) and a new segment begins."""
    segment, previous = 0, None
    for row in rows:
        if previous is not None and row["step"] <= previous:
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
