"""The run-directory contract (pipeline/records.py): the README table, typed reads of damaged files, writers."""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from pipeline import records


def test_readme_run_directory_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert records.markdown_table() in readme, "README's run-directory table is stale: python -m pipeline.records"
    documented = re.findall(r"^\| `([^`]+)` \|", readme.split("## The run directory")[1].split("\n## ")[0], re.M)
    assert [f.path for f in records.FILES] == documented[: len(records.FILES)]


def test_missing_file_reads_as_an_empty_falsy_record(tmp_path):
    done = records.TRAIN_DONE.read(tmp_path)
    assert not done and done.status is None and done.parameters.total is None


def test_damaged_json_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "DONE").write_text('{"status": "compl')
    problems: list[str] = []
    assert not records.TRAIN_DONE.read(tmp_path, problems)
    assert problems == ["train/DONE: not valid JSON (Unterminated string starting at); ignored"]
    (tmp_path / "train" / "DONE").write_text('{"steps_done": "many"}')
    problems.clear()
    assert not records.TRAIN_DONE.read(tmp_path, problems)
    assert problems[0].startswith("train/DONE: steps_done: input should be a valid integer")


def test_writers_are_validated_and_keep_extra_keys(tmp_path):
    records.PLAN.write(tmp_path, {"steps_planned": 40, "note": "kept"})
    plan = records.PLAN.read(tmp_path)
    assert plan.steps_planned == 40 and plan.model_extra == {"note": "kept"}
    with pytest.raises(records.RecordError, match="steps_planned"):
        records.PLAN.write(tmp_path, {"steps_planned": "forty"})
    with pytest.raises(records.RecordError, match="step"):
        records.METRICS.append(tmp_path, {"loss": 1.0})  # every metrics line needs its step


def test_jsonl_rows_use_the_one_torn_line_rule(tmp_path):
    records.METRICS.append(tmp_path, {"step": 1, "loss": float("nan")})
    with open(records.METRICS.at(tmp_path), "a") as fh:
        fh.write('{"step": 2, "loss": 3.')
    problems: list[str] = []
    assert records.METRICS.rows(tmp_path, problems) == [{"step": 1, "loss": "nan"}]
    assert problems == ["train/metrics.jsonl: last line (truncated write?) is not valid JSON and was skipped"]


@pytest.mark.parametrize(("path", "spec"), [("checkpoints/0000000010/model.safetensors", records.CHECKPOINTS),
                                            ("stamps/train.sha256", records.STAMPS),
                                            ("prepared/test.npy", records.TOKENS)])  # fmt: skip
def test_placeholders_match_one_path_component(path, spec):
    assert records.matches(spec, path)
    assert not records.matches(records.METRICS, "train/metrics.jsonl.bak")
