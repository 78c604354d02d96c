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

`read_frame` returns the same rows as a pandas DataFrame and is the one for long logs: pyarrow parses the file in
blocks, and any file the fast path cannot vouch for (a parse error, a non-object line, two objects on a line, a
blank line, a missing `key`, a nested value) is read again line by line, so the rows and problems are always
`read_lenient`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.redact import scrub

if TYPE_CHECKING:
    import pandas as pd

# pandas and pyarrow (≈ 1 s of start-up) are imported by the frame reader only: the trainer appends lines and
# the importers read them without either.


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


_encode = json.JSONEncoder(default=str).encode  # one encoder for every line (json.dumps(default=) builds one per call)


def _line(record: dict) -> str:
    line = _encode(record)
    if "NaN" in line or "Infinity" in line:  # a non-finite float (or a text naming one): the exact, slower path
        line = _encode({k: _finite_or_str(v) for k, v in record.items()})
    return line + "\n"


def dumps(record: dict) -> str:
    """One line (with its newline) for `record`; non-finite floats become strings."""
    return scrub(_line(record))


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
    """Many lines, for `pipeline.atomic.write_text`, which scrubs the whole file once (each line ends in `}` and a
    newline, so no secret pattern matches across two): scrubbing here as well would read it twice."""
    return "".join(_line(r) for r in rows)


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


def _tail(path: Path, size: int) -> tuple[int, bytes]:
    """(offset just past the last newline, the bytes after it): the last line when the file does not end in one."""
    with open(path, "rb") as fh:
        end, tail = size, b""
        while end > 0:
            start = max(0, end - (1 << 16))
            fh.seek(start)
            block = fh.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1, block[cut + 1 :] + tail
            tail, end = block + tail, start
        return 0, tail


class _Prefix:
    """The first `limit` bytes of a file, as a file object pyarrow reads in blocks (never the whole file at once)."""

    def __init__(self, path: Path, limit: int, start: int = 0):
        self.fh, self.left = open(path, "rb"), limit - start  # noqa: SIM115 - closed by read_frame
        self.fh.seek(start)
        self.lines = 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        self.lines += data.count(b"\n")
        return data

    @property
    def closed(self) -> bool:
        return self.fh.closed

    def close(self) -> None:
        self.fh.close()


BLOCK = 1 << 22  # bytes pyarrow parses at a time


def _arrow_table(path: Path, end: int, start: int = 0):
    """(pyarrow table of the file's bytes `start`..`end`, newlines in them), or (None, 0) where pyarrow refuses it.
    The streaming reader holds one block at a time (a third of read_json's peak memory) but fixes the columns
    from its first block; a key first seen later sends the file to read_json."""
    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ReadOptions(block_size=BLOCK)
    for whole in (False, True):
        source = _Prefix(path, end, start)
        try:
            if whole:
                table = pj.read_json(source, read_options=options)
            else:
                table = pa.Table.from_batches(list(pj.open_json(source, read_options=options)))
            table.validate(full=True)  # pyarrow takes bytes that are not UTF-8 into strings; the line reader does not
            return table, source.lines
        except (pa.ArrowInvalid, UnicodeDecodeError):
            continue
        finally:
            source.close()
    return None, 0


def _table(path: Path, end: int, cache: Path | None):
    """`_arrow_table` of the first `end` bytes, through the columnar cache (pipeline/jsonl_cache.py) when given:
    a cache of a shorter prefix has only the appended lines parsed."""
    if cache is None:
        return _arrow_table(path, end)
    import pyarrow as pa

    from pipeline import jsonl_cache

    hit = jsonl_cache.load(cache, path)
    if hit is not None and hit[1] == end:
        return hit[0], hit[2]
    before = jsonl_cache.identity(path, end)
    table = None
    if hit is not None and hit[1] < end:
        old, start, old_lines = hit
        new, new_lines = _arrow_table(path, end, start)
        if new is not None and new.num_rows == new_lines:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError):
                table, lines = pa.concat_tables([old, new], promote_options="permissive"), old_lines + new_lines
    if table is None:
        table, lines = _arrow_table(path, end)
    if table is None:
        return None, 0
    # Cached only when the rows are one per line (else the line reader reads this file) and the log is the same
    # file, with the same bytes at both ends, after the parse as before it.
    if table.num_rows == lines and before is not None and jsonl_cache.identity(path, end) == before:
        jsonl_cache.store(cache, table, end, lines, before)
    return table, lines


def warm_cache(path: Path, cache: Path) -> None:
    """Parse `path` into its columnar cache now, without pandas (a stage's end: records.cache_logs)."""
    body_end, _ = _tail(path, path.stat().st_size)
    if body_end:
        _table(path, body_end, cache)


def _fast_frame(path: Path, key: str | None, cache: Path | None = None) -> tuple[pd.DataFrame, bool] | None:
    """(rows, whether a torn last line was dropped) parsed by pyarrow, or None when this file needs the line-by-line
    reader for its result to be read_lenient's."""
    import pandas as pd
    import pyarrow as pa

    size = path.stat().st_size
    body_end, tail = _tail(path, size)
    last, torn = None, False
    if tail.strip():
        try:
            last = json.loads(tail.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            torn = True  # the torn-line rule: a last line without its newline that does not parse
        else:
            if not isinstance(last, dict) or (key is not None and key not in last):
                return None
    frames = []
    if body_end:
        table, lines = _table(path, body_end, cache)
        if table is None:
            return None
        # One row per line: pyarrow skips blank lines and splits `{..}{..}`, which the line reader reports.
        if table.num_rows != lines:
            return None
        if any(pa.types.is_nested(f.type) for f in table.schema):
            return None
        if key is not None and (key not in table.column_names or table.column(key).null_count):
            return None  # a row without the key is a problem (and `"key": null` is not absent): the line reader says
        frames.append(table.to_pandas(split_blocks=True, self_destruct=True))  # frees each column once converted
        del table
    if last is not None:
        frames.append(pd.DataFrame([last]))
    if not frames:
        return pd.DataFrame(), torn
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return frame, torn


def read_frame(path: Path, problems: list[str], label: str, key: str | None = None,
               cache: Path | None = None) -> pd.DataFrame:  # fmt: skip
    """`read_lenient`'s rows as a DataFrame in file order (a column per key any row has), and the same problems.
    `cache`: where to keep the parsed columns for the next read (pipeline/jsonl_cache.py).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> _ = path.write_text('{"step": 1, "loss": 2.5}\\n{"step": 2, "loss": "nan"}\\n{"step": 3, "lo')
    >>> problems = []
    >>> read_frame(path, problems, "m.jsonl", "step").to_dict("list")
    {'step': [1, 2], 'loss': [2.5, 'nan']}
    >>> problems
    ['m.jsonl: last line (truncated write?) is not valid JSON and was skipped']
    """
    import pandas as pd

    fast = _fast_frame(path, key, cache)
    if fast is None:
        return pd.DataFrame([obj for _, obj in read_lenient(path, problems, label, key)])
    frame, torn = fast
    if torn:
        problems.append(f"{label}: last line (truncated write?) is not valid JSON and was skipped")
    return frame
