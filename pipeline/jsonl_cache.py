"""A columnar copy of a long JSON-lines log, so a report does not parse a million lines again.

`jsonl.read_frame` parses a log with pyarrow (≈ 3 s and most of a report's time for a 1M-line `metrics.jsonl`).
Given a cache path, it keeps that parse as an Arrow IPC file holding what it was computed from: the log's inode,
the byte offset it covers (just past a newline) and the sha256 of the first and the last 64 KiB before that
offset. A later read

- with the same inode, offset and hash takes the table as it is: memory-mapped, one chunk per column and
  uncompressed (≈ 1/3 of the log's size), so pandas gets each column without a copy (milliseconds, and the
  pages are the file's, not the process's own memory);
- with the same inode, a larger offset and the old hash unchanged (lines appended: a run still training)
  parses only the appended bytes and stores the joined table;
- with anything else (a log rewritten by a resume, replaced by a re-import, edited) parses the whole log again.
  Our writers only append or replace a log whole (a new inode); an edit in place, inside the file and away from
  both hashed ends, is the one change this does not see (`rm -r runs/<EXP>/.cache` forgets every cache).

The cache is derived data: deleting it loses nothing, a cache that cannot be written (a read-only run directory)
is skipped, and two readers writing it at once each replace it whole (temp file + rename).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.atomic import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa

VERSION = b"1"  # bump when what a cached table holds changes: older caches are then parsed again
TAIL = 1 << 16  # bytes hashed at each end of the covered prefix


def ends_hash(path: Path, end: int) -> str:
    """sha256 of the first and the last 64 KiB of the file's first `end` bytes."""
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read(min(end, TAIL)))
        fh.seek(max(0, end - TAIL))
        digest.update(fh.read(end - max(0, end - TAIL)))
        return digest.hexdigest()


def identity(path: Path, end: int) -> tuple[int, str] | None:
    """(inode, ends_hash) of the log's first `end` bytes now; None when it is gone. Taken before and after a parse:
    a log replaced meanwhile (an import or a `train.command` run rewrites it while a report or `make peek` reads
    it) must not have the old rows cached under the new file's name."""
    try:
        return path.stat().st_ino, ends_hash(path, end)
    except OSError:
        return None


def load(cache: Path, path: Path) -> tuple[pa.Table, int, int] | None:
    """(table, byte offset it covers, lines in it) from a cache that still describes a prefix of `path`'s current
    bytes, else None."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        table = ipc.open_file(pa.memory_map(str(cache))).read_all()
        meta = table.schema.metadata or {}
        if meta.get(b"labnote.version") != VERSION or int(meta[b"labnote.inode"]) != path.stat().st_ino:
            return None
        end, lines = int(meta[b"labnote.end"]), int(meta[b"labnote.lines"])
        if end > path.stat().st_size or ends_hash(path, end) != meta[b"labnote.ends_sha256"].decode():
            return None
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None
    return table.replace_schema_metadata(None), end, lines


def store(cache: Path, table: pa.Table, end: int, lines: int, parsed: tuple[int, str]) -> bool:
    """Write the cache whole (pipeline/atomic.py) for the log whose `identity` was `parsed` while it was read;
    False (and nothing written) where the directory cannot be written."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    inode, digest = parsed
    meta = {b"labnote.version": VERSION, b"labnote.inode": str(inode).encode(), b"labnote.end": str(end).encode(),
            b"labnote.lines": str(lines).encode(), b"labnote.ends_sha256": digest.encode()}  # fmt: skip
    table = table.combine_chunks().replace_schema_metadata(meta)
    try:
        with atomic_path(cache) as tmp, pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as out:
            out.write_table(table)
    except OSError:
        return False
    return True
