"""Append-only JSON-lines logs (`metrics.jsonl`, `validation.jsonl`) that survive a kill.

Each line is written whole (`pipeline.jsonl.append`: a killed process leaves at most a torn last line) and the
log is fsynced at each checkpoint (`sync`), not per line, which would cost the step path an fsync every log
interval; on resume the log is cut back to the checkpoint's step (so the lines a machine crash could lose are
the ones a resume drops anyway), and torn or damaged lines (the rule is in `pipeline/jsonl.py`) are dropped
and logged, so no step appears twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pipeline import jsonl
from pipeline.atomic import write_text

log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JsonlLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def append(self, record: dict) -> None:
        if self.enabled:
            jsonl.append(self.path, record, sync=False)

    def sync(self) -> None:
        if self.enabled:
            jsonl.fsync(self.path)

    def last_record(self) -> dict | None:
        if not self.path.is_file():
            return None
        rows = jsonl.read_lenient(self.path, [], self.path.name)
        return rows[-1][1] if rows else None

    def records(self) -> list[dict]:
        """Every complete line, in file order."""
        if not self.path.is_file():
            return []
        return [row for _, row in jsonl.read_lenient(self.path, [], self.path.name)]

    def truncate_after(self, step: int) -> list[str]:
        """Keep only complete lines with `step` <= the given step (used when resuming). Returns the damage
        dropped on the way (torn, undecodable or broken lines), one line each, for the report."""
        if not self.enabled or not self.path.is_file():
            return []
        problems: list[str] = []
        label = f"{self.path.parent.name}/{self.path.name}"
        kept = [obj for _, obj in jsonl.read_lenient(self.path, problems, label, key="step")
                if isinstance(obj["step"], (int, float)) and obj["step"] <= step]  # fmt: skip
        for problem in problems:
            log.warning("resume: %s", problem)
        write_text(self.path, jsonl.text(kept))
        return [f"{p}; the log was cut back to the checkpoint's step {max(step, 0)}" for p in problems]
