"""The per-process run cache and runs/<EXP>/summary.json: reused while nothing changed, recomputed when anything did."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

from pipeline import jsonl, records
from pipeline.report import index, loader, summary, tables

sys.path.insert(0, str(REPO / "benchmarks"))
from synthetic import make_run  # noqa: E402


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    make_run(tmp_path / "runs" / "base", 300, validations=5)
    make_run(tmp_path / "runs" / "new", 400, validations=5, segments=2, compare_to="base")
    return tmp_path / "runs"


def count_parses(monkeypatch) -> list[Path]:
    seen: list[Path] = []
    real = jsonl.read_frame

    def counting(path, *args, **kwargs):
        seen.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(jsonl, "read_frame", counting)
    return seen


def test_load_run_reads_each_run_once_until_a_file_changes(runs, monkeypatch):
    parses = count_parses(monkeypatch)
    first = loader.load_run(runs / "new")
    again = loader.load_run(runs / "new")
    assert len(parses) == 2  # metrics + validation, once
    assert again is not first and again.metrics is first.metrics
    again.problems.append("mine")
    assert loader.load_run(runs / "new").problems == []
    records.METRICS.append(runs / "new", {"step": 401, "loss": 1.5, "segment": 1})
    assert loader.load_run(runs / "new").metrics["step"].iloc[-1] == 401
    assert len(parses) == 4


def test_summary_is_reused_only_while_its_sources_are_unchanged(runs, monkeypatch):
    fresh = summary.current(runs / "new")
    assert records.SUMMARY.at(runs / "new").is_file()
    assert (fresh.name, fresh.status, fresh.steps_done, fresh.has_train) == ("new", "completed", 400, True)
    loader._CACHE.clear()
    parses = count_parses(monkeypatch)
    assert summary.current(runs / "new") == fresh and parses == []  # read from summary.json, no log parsed

    done = records.TRAIN_DONE.read(runs / "new").model_dump(exclude_unset=True)
    records.TRAIN_DONE.write(runs / "new", {**done, "steps_done": 200})  # a run changed after its summary
    changed = summary.current(runs / "new")
    assert (changed.steps_done, changed.status) == (200, "partial") and parses
    assert json.loads(records.SUMMARY.at(runs / "new").read_text())["steps_done"] == 200


def test_summary_follows_its_baseline_and_the_code(runs, monkeypatch):
    before = summary.current(runs / "new")
    assert before.sources["baseline"]["name"] == "base"
    records.METRICS.append(runs / "base", {"step": 301, "loss": 9.0})  # the baseline's checks take part
    after = summary.current(runs / "new")
    assert after.sources["baseline"] != before.sources["baseline"]
    monkeypatch.setattr(summary, "code_hash", lambda: "edited checks")
    assert summary.current(runs / "new").sources["code"] == "edited checks"


def test_index_rows_come_from_summaries(runs, tmp_path, monkeypatch):
    out = index.build_index(runs, tmp_path / "reports")
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert any("base" in r for r in rows) and any("new" in r and "completed" in r for r in rows)
    assert {p.parent.name for p in runs.glob("*/summary.json")} == {"base", "new"}
    loader._CACHE.clear()
    parses = count_parses(monkeypatch)
    assert index.build_index(runs, tmp_path / "reports").read_text() == text
    assert parses == []


def test_steady_mask_matches_the_row_by_row_rule(runs):
    run = loader.load_run(runs / "new")
    first = tables._first_steps(run)
    assert len(first) == 2  # two segments
    steady_old = [int(s) for s in run.metrics["step"] if int(s) not in first]
    median_old = float(run.metrics[run.metrics["step"].isin(steady_old)]["tokens_per_s"].dropna().median())
    assert tables.median_of(run, "tokens_per_s") == median_old
    assert tables.throughput(run)["rows"] == len(steady_old)
