"""The columnar cache of long logs (pipeline/jsonl_cache.py): served only while it still describes the log."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from pipeline import jsonl, jsonl_cache


def rows(first: int, last: int, **extra) -> list[dict]:
    return [{"step": s, "loss": 5.0 - s * 1e-3, "tokens": 256 * s, **extra} for s in range(first, last + 1)]


def read(path: Path, cache: Path, problems: list[str] | None = None) -> pd.DataFrame:
    return jsonl.read_frame(path, [] if problems is None else problems, "m.jsonl", "step", cache=cache)


@pytest.fixture
def log(tmp_path: Path):
    path, cache = tmp_path / "m.jsonl", tmp_path / ".cache" / "m.jsonl.arrow"
    path.write_text(jsonl.text(rows(1, 300)))
    return path, cache


@pytest.fixture
def parses(monkeypatch):
    """Every byte range pyarrow is asked to parse, as (start, end)."""
    calls: list[tuple[int, int]] = []
    real = jsonl._arrow_table

    def counting(path, end, start=0):
        calls.append((start, end))
        return real(path, end, start)

    monkeypatch.setattr(jsonl, "_arrow_table", counting)
    return calls


def test_a_current_cache_is_read_without_parsing(log, parses):
    path, cache = log
    first = read(path, cache)
    assert cache.is_file() and parses == [(0, path.stat().st_size)]
    again = read(path, cache)
    assert parses == [(0, path.stat().st_size)]  # nothing parsed the second time
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(again, pd.DataFrame(rows(1, 300)))


def test_appended_lines_alone_are_parsed(log, parses):
    path, cache = log
    read(path, cache)
    old_end = path.stat().st_size
    with open(path, "a") as fh:  # a run still training: same file, more lines (a new key and a float among ints)
        fh.write(jsonl.text(rows(301, 320, segment=1) + [{"step": 321, "loss": 0.5, "tokens": 1.5}]))
    got = read(path, cache)
    assert parses[-1] == (old_end, path.stat().st_size)
    want = pd.DataFrame(rows(1, 300) + rows(301, 320, segment=1) + [{"step": 321, "loss": 0.5, "tokens": 1.5}])
    pd.testing.assert_frame_equal(got, want)
    assert len(parses) == 2
    pd.testing.assert_frame_equal(read(path, cache), want)  # and the joined table was stored
    assert len(parses) == 2


def test_a_torn_line_is_never_cached(log):
    path, cache = log
    with open(path, "a") as fh:
        fh.write('{"step": 301, "lo')
    for _ in range(2):
        problems: list[str] = []
        assert len(read(path, cache, problems)) == 300
        assert problems == ["m.jsonl: last line (truncated write?) is not valid JSON and was skipped"]
    with open(path, "a") as fh:  # the rest of the line arrives (a write seen half-way): now it is a row
        fh.write('ss": 1.0}\n')
    assert read(path, cache)["step"].iloc[-1] == 301


@pytest.mark.parametrize(
    "how",
    ["replaced", "replaced by the same bytes", "edited in place", "cut shorter", "cache damaged", "cache version"],
)
def test_a_changed_log_is_parsed_again(log, parses, monkeypatch, how):
    path, cache = log
    read(path, cache)
    new = rows(1, 300)
    if how.startswith("replaced"):  # a resume cutting the log back, a re-import: a new file under the same name
        if how == "replaced":
            new = [dict(r, loss=r["loss"] + 1) for r in new]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(jsonl.text(new))
        os.replace(tmp, path)
    elif how == "edited in place":  # same inode, same length, different last value
        new[-1]["loss"] = 9.0
        text = jsonl.text(new)
        assert len(text) == path.stat().st_size
        with open(path, "r+") as fh:
            fh.write(text)
    elif how == "cut shorter":
        new = new[:100]
        with open(path, "r+") as fh:
            fh.truncate(len(jsonl.text(new)))
    elif how == "cache damaged":
        cache.write_bytes(b"not an arrow file")
    else:  # a labnote whose cache holds something else
        monkeypatch.setattr(jsonl_cache, "VERSION", b"0")
    got = read(path, cache)
    assert parses[-1] == (0, path.stat().st_size)
    pd.testing.assert_frame_equal(got, pd.DataFrame(new))


def test_a_log_replaced_during_the_parse_is_not_cached(log, parses, monkeypatch):
    """A report reading while an import or a train.command run replaces the log: the rows parsed are the old file's
    and must not be stored under the new file's inode."""
    path, cache = log
    real = jsonl._arrow_table

    def swap_after(p, end, start=0):
        out = real(p, end, start)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(jsonl.text([dict(r, loss=9.0) for r in rows(1, 300)])[: path.stat().st_size])
        os.replace(tmp, path)
        return out

    monkeypatch.setattr(jsonl, "_arrow_table", swap_after)
    read(path, cache)
    assert not cache.exists()
    monkeypatch.setattr(jsonl, "_arrow_table", real)
    assert set(read(path, cache)["loss"]) == {9.0}


def test_a_cache_that_cannot_be_written_is_skipped(log, parses):
    path, cache = log
    cache.parent.parent.mkdir(exist_ok=True)
    cache.parent.write_text("a file where the cache folder would go")  # root ignores chmod: a file blocks mkdir
    for _ in range(2):
        pd.testing.assert_frame_equal(read(path, cache), pd.DataFrame(rows(1, 300)))
    assert len(parses) == 2 and not cache.exists()
    assert not list(cache.parent.parent.glob(".*.tmp"))


def test_the_cache_has_the_files_mode(log):
    path, cache = log
    old = os.umask(0o027)
    try:
        read(path, cache)
    finally:
        os.umask(old)
    assert cache.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("min_bytes", [0, 1 << 40])
def test_an_import_caches_its_long_logs(tmp_path: Path, monkeypatch, min_bytes):
    """The stage that wrote a long log caches it (records.cache_logs): the first report parses nothing."""
    import import_fixtures as fx

    from pipeline import records
    from pipeline.importers import run_import
    from pipeline.report import loader

    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(records, "CACHE_MIN_BYTES", min_bytes)
    run_dir = run_import(fx.hf_output_dir(tmp_path / "hf_out"), "hf-trainer", "hf")
    cached = records.FRAME_CACHE.at(run_dir) / "train" / "metrics.jsonl.arrow"
    assert cached.is_file() is (min_bytes == 0)
    calls: list[int] = []
    real = jsonl._arrow_table
    monkeypatch.setattr(jsonl, "_arrow_table", lambda *a, **k: calls.append(1) or real(*a, **k))
    run = loader.load_run(run_dir)
    assert len(run.metrics) == len(jsonl.read_lenient(records.METRICS.at(run_dir), [], "m"))
    assert (calls == []) is (min_bytes == 0)
