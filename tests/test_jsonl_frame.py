"""`jsonl.read_frame` (pyarrow, for long logs) against the line-by-line reader: same rows, same problems."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import jsonl

GOOD = "".join(json.dumps({"step": s, "loss": 1.0 / s, "tokens": 256 * s, "time_utc": "t"}) + "\n" for s in range(1, 6))

# (name, file bytes, whether pyarrow's result is used: False = the line reader had to read it)
CASES = [
    ("good", GOOD.encode(), True),
    ("torn last line", (GOOD + '{"step": 6, "lo').encode(), True),
    ("last line without newline", (GOOD + '{"step": 6, "loss": 0.1}').encode(), True),
    ("last line not UTF-8", GOOD.encode() + b'{"step": 6, "loss": "\xff', True),
    ("keys appear later", (GOOD + '{"step": 6, "loss": 0.1, "segment": 1}\n').encode(), True),
    ("ints then floats", (GOOD + '{"step": 6, "loss": 1, "tokens": 1.5}\n').encode(), True),
    ("nulls", (GOOD + '{"step": 6, "loss": null}\n').encode(), True),
    ("non-finite as strings", (GOOD + '{"step": 6, "loss": "nan"}\n').encode(), False),
    ("damaged middle line", (GOOD[:40] + "\n" + GOOD[40:]).encode(), False),
    ("not UTF-8 in the middle", b'{"step": 0, "x": "\xff"}\n' + GOOD.encode(), False),
    ("a list line", ("[1, 2]\n" + GOOD).encode(), False),
    ("a number as last line", (GOOD + "3").encode(), False),
    ("two objects on a line", ('{"step": 0}{"step": 1}\n' + GOOD).encode(), False),
    ("blank lines", (GOOD.replace("\n", "\n\n", 1) + "  \n").encode(), False),
    ("no step", (GOOD + '{"loss": 1.0}\n').encode(), False),
    ("step null", (GOOD + '{"step": null}\n').encode(), False),
    ("nested value", (GOOD + '{"step": 7, "x": {"a": 1}}\n').encode(), False),
    ("duplicate key", (GOOD + '{"step": 7, "step": 8}\n').encode(), False),
    ("only a torn line", b'{"step": 1, "lo', True),
    ("empty", b"", True),
]


@pytest.mark.parametrize("name,data,fast", CASES, ids=[c[0] for c in CASES])
def test_read_frame_is_read_lenient(tmp_path: Path, name, data, fast):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(data)
    want_problems: list[str] = []
    want = pd.DataFrame([obj for _, obj in jsonl.read_lenient(path, want_problems, "train/metrics.jsonl", "step")])
    problems: list[str] = []
    got = jsonl.read_frame(path, problems, "train/metrics.jsonl", "step")
    assert problems == want_problems
    pd.testing.assert_frame_equal(got, want)
    assert (jsonl._fast_frame(path, "step") is not None) is fast


@pytest.mark.parametrize("late_key", [False, True])
def test_read_frame_long_file_in_blocks(tmp_path: Path, monkeypatch, late_key):
    """Many pyarrow blocks (a key first seen late: the streaming reader refuses, read_json takes it) and a torn
    end: still one row per complete line."""
    monkeypatch.setattr(jsonl, "BLOCK", 1 << 14)
    rows = [{"step": s, "loss": 5.0 - s * 1e-4, **({"segment": 1} if late_key and s > 4_000 else {})}
            for s in range(5_000)]  # fmt: skip
    path = tmp_path / "m.jsonl"
    path.write_text(jsonl.text(rows) + '{"step": 50000, "loss": 1.')
    problems: list[str] = []
    got = jsonl.read_frame(path, problems, "m.jsonl", "step")
    assert jsonl._fast_frame(path, "step") is not None
    want = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(got, want)
    assert problems == ["m.jsonl: last line (truncated write?) is not valid JSON and was skipped"]


@pytest.mark.parametrize("name,data,fast", CASES, ids=[c[0] for c in CASES])
def test_read_frame_through_the_cache_is_read_lenient(tmp_path: Path, name, data, fast):
    """The same rows and problems from a cold cache (parse + store) and from a warm one (pipeline/jsonl_cache.py)."""
    path, cache = tmp_path / "metrics.jsonl", tmp_path / ".cache" / "metrics.jsonl.arrow"
    path.write_bytes(data)
    want_problems: list[str] = []
    want = pd.DataFrame([obj for _, obj in jsonl.read_lenient(path, want_problems, "train/metrics.jsonl", "step")])
    for _ in ("cold", "warm"):
        problems: list[str] = []
        got = jsonl.read_frame(path, problems, "train/metrics.jsonl", "step", cache=cache)
        assert problems == want_problems
        pd.testing.assert_frame_equal(got, want)
