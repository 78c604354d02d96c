"""Append-only JSON-lines logs (`metrics.jsonl`, `validation.jsonl`) that survive a kill.

Each line is written whole and flushed; on resume the log is cut back to the checkpoint's step, and a
torn last line (from a kill mid-write) is dropped, so no step appears twice.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

from pipeline.atomic import write_text


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finite_or_str(value):
    # JSON has no NaN/Inf: write them as strings so every line stays valid JSON and the report can flag them.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def append(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({k: _finite_or_str(v) for k, v in record.items()}) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def last_record(self) -> dict | None:
        if not self.path.is_file():
            return None
        for line in reversed(self.path.read_text(encoding="utf-8").splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        return None

    def truncate_after(self, step: int) -> None:
        """Keep only complete lines with `step` <= the given step (used when resuming)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        write_text(self.path, "".join(k + "\n" for k in kept))
