"""JSON lines: the one reader and writer for every `.jsonl` file labnote writes or imports.

One rule for damage, used by the report loader, the importers and resume alike:

- a **torn** line is the last line of a file that does not end in a newline and does not parse: a write cut
  off by a kill. It is always skipped, and the reader says so (the run it ends is exactly the one a report
  must describe);
- any other line that is not UTF-8, not JSON, or not a JSON object is **damaged**. A lenient reader skips it
  and records the problem; a strict reader (an import) raises with the file and line number.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
>>> append(path, {"step": 1, "loss": float("nan")})
>>> _ = path.open("a").write('{"step": 2, "lo')   # a kill in the middle of a write
>>> [(line.lineno, line.obj, line.damage) for line in read(path)]
[(1, {'step': 1, 'loss': 'nan'}, None), (2, None, 'torn')]
>>> problems = []
>>> read_lenient(path, problems, "train/m.jsonl")
[(1, {'step': 1, 'loss': 'nan'})]
>>> problems
['train/m.jsonl: last line (truncated write?) is not valid JSON and was skipped']
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.redact import scrub


class JsonlError(ValueError):
    """A damaged line in a file read strictly; the message names the file and line."""


@dataclass(frozen=True)
class Line:
    lineno: int
    obj: object = None  # the parsed value; None when the line is torn or damaged
    damage: str | None = None  # None, "torn", "utf8" or "json"
    detail: str = ""  # the JSON parser's message, for "json"

    @property
    def torn(self) -> bool:
        return self.damage == "torn"


def _finite_or_str(value):
    # JSON has no NaN/Inf: they are written as the strings "nan"/"inf" so every line stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def dumps(record: dict) -> str:
    """One line (with its newline) for `record`; non-finite floats become strings."""
    return scrub(json.dumps({k: _finite_or_str(v) for k, v in record.items()}, default=str)) + "\n"


def append(path: Path, record: dict, sync: bool = True) -> None:
    """Append one whole line (a killed process leaves at most a torn last line) and, with `sync`, fsync it (the
    line survives a machine crash too). The train logs pass `sync=False` and call `fsync` at each checkpoint:
    a resume keeps only the lines up to its checkpoint, and an fsync per line cost ~5% of a smoke step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(dumps(record))
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def fsync(path: Path) -> None:
    """Flush `path`'s appended lines to the disk (nothing when it does not exist yet)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def text(rows: Iterable[dict]) -> str:
    return "".join(dumps(r) for r in rows)


def read(path: Path) -> Iterator[Line]:
    """Every non-blank line of `path` in file order, parsed or with its damage (see the module docstring)."""
    data = path.read_bytes()
    raw_lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        raw_lines = raw_lines[:-1]
    last = len(raw_lines)
    for lineno, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        damage, detail = None, ""
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            damage = "utf8"
        except json.JSONDecodeError as exc:
            damage, detail = "json", exc.msg
        if damage is None:
            yield Line(lineno, obj)
        else:
            yield Line(lineno, None, "torn" if lineno == last and not ends_with_newline else damage, detail)


def read_strict(path: Path, warnings: list[str]) -> list[tuple[int, dict]]:
    """(line number, object) pairs; a torn last line becomes a warning, any other damaged line raises."""
    out = []
    for line in read(path):
        if line.torn:
            warnings.append(
                f"{path.name}:{line.lineno}: last line is cut off (the job was killed while writing?); skipped"
            )
        elif line.damage == "utf8":
            raise JsonlError(f"{path}:{line.lineno}: not UTF-8 text")
        elif line.damage:
            raise JsonlError(f"{path}:{line.lineno}: not valid JSON ({line.detail})")
        elif not isinstance(line.obj, dict):
            raise JsonlError(f"{path}:{line.lineno}: expected a JSON object per line, got {type(line.obj).__name__}")
        else:
            out.append((line.lineno, line.obj))
    return out


def read_lenient(path: Path, problems: list[str], label: str, key: str | None = None) -> list[tuple[int, dict]]:
    """(line number, object) pairs; torn or damaged lines, non-objects and objects without `key` are skipped,
    each described in `problems` as "<label>: line N … was skipped"."""
    out = []
    for line in read(path):
        if line.torn:
            problems.append(f"{label}: last line (truncated write?) is not valid JSON and was skipped")
        elif line.damage == "utf8":
            problems.append(f"{label}: line {line.lineno} is not UTF-8 text and was skipped")
        elif line.damage:
            problems.append(f"{label}: line {line.lineno} is not valid JSON and was skipped")
        elif key is not None and (not isinstance(line.obj, dict) or key not in line.obj):
            problems.append(f"{label}: line {line.lineno} has no '{key}' and was skipped")
        elif not isinstance(line.obj, dict):
            problems.append(f"{label}: line {line.lineno} is not a JSON object and was skipped")
        else:
            out.append((line.lineno, line.obj))
    return out
