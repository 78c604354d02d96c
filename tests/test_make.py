"""`make` drives the stages as file targets: a rerun does nothing, an edit reruns exactly what it affects,
bad input stops before anything in runs/ changes. Runs real stages on a tiny experiment in a copy of the repo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, pipeline_env, project_copy, write_experiment

pytestmark = pytest.mark.slow
STAGES = ("prepare", "train", "eval", "report")


def make(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = pipeline_env()
    env.pop("PYTHONPATH")  # the copy must work on its own
    return subprocess.run(
        ["make", *args, f"PY={sys.executable}"], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )


def stages_run(proc: subprocess.CompletedProcess) -> list[str]:
    """Stage commands Make executed (it echoes each recipe line it runs)."""
    return [s for s in STAGES if f"-m pipeline {s} runs/" in proc.stdout]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("repo"))
    write_experiment(root, "tiny", TINY)
    first = make(root, "report", "EXP=tiny")
    assert first.returncode == 0, first.stderr[-3000:]
    assert stages_run(first) == list(STAGES)
    return root


def test_report_and_plots_written(project: Path):
    report = project / "reports" / "tiny" / "report.md"
    text = report.read_text()
    assert re.search(r"\*\*Status: (✅|⚠️|❌) completed[^*]*\*\* — 12 of 12 configured steps", text)
    for png in ("loss.png", "lr.png", "grad_norm.png"):
        assert (report.parent / png).stat().st_size > 1000
        assert f"]({png})" in text  # linked relatively, so it renders on GitHub


def test_second_run_reruns_nothing(project: Path):
    again = make(project, "report", "EXP=tiny")
    assert again.returncode == 0 and stages_run(again) == []


def test_template_edit_rerenders_only_the_report(project: Path):
    template = project / "templates" / "report.md.j2"
    future = time.time() + 5
    os.utime(template, (future, future))
    proc = make(project, "report", "EXP=tiny")
    assert proc.returncode == 0 and stages_run(proc) == ["report"]


def test_config_edits_rerun_only_affected_stages(project: Path):
    title = make(project, "report", "EXP=tiny", "SET=report.title=Renamed")
    assert title.returncode == 0 and stages_run(title) == ["report"]
    assert (project / "reports" / "tiny" / "report.md").read_text().startswith("# Renamed")
    lr = make(project, "report", "EXP=tiny", "SET=train.lr=0.001")
    assert lr.returncode == 0 and stages_run(lr) == ["train", "eval", "report"]
    assert 'SET="train.lr=0.001"' in (project / "reports" / "tiny" / "report.md").read_text()


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "args, names",
    [
        (["EXP=tiny", "SET=train.lr=fast"], "train.lr"),
        (["EXP=tiny", "SET=model.max_seq_len=16"], "data.seq_len"),
        (["EXP=tiny", "SET=train.optimizer=sgd"], "train.optimizer"),
        (["EXP=tinyy"], "experiments/tinyy.yaml"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(project: Path, args: list[str], names: str):
    before = snapshot(project / "runs")
    proc = make(project, "report", *args)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and names in errors[0], proc.stderr
    assert snapshot(project / "runs") == before


def test_untrained_run_is_flagged(project: Path):
    proc = make(project, "report", "EXP=tiny", "SET=train.steps=2 train.lr=1e-7 train.warmup_steps=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (project / "reports" / "tiny" / "report.md").read_text()
    assert "`untrained_perplexity`" in text and "`loss_not_decreasing`" in text


def test_japanese_report_is_rendered_beside_the_english_one(project: Path):
    assert make(project, "report", "EXP=tiny").returncode == 0  # back to the experiment as written (no SET)
    english = project / "reports" / "tiny" / "report.md"
    before = english.read_bytes()
    ja = make(project, "report", "EXP=tiny", "REPORT_LANG=ja")
    assert ja.returncode == 0 and stages_run(ja) == ["report"], ja.stderr[-2000:]
    assert "## 実行概要" in (project / "reports" / "tiny" / "report.ja.md").read_text()
    assert english.read_bytes() == before  # the English report is not overwritten
    both = make(project, "report", "EXP=tiny", "REPORT_LANG=en,ja")
    assert both.returncode == 0 and stages_run(both) == ["report"]
    again = make(project, "report", "EXP=tiny", "REPORT_LANG=en,ja")
    assert again.returncode == 0 and stages_run(again) == []  # both files are targets: nothing to redo


def test_index_and_compare_in_japanese_are_rebuilt_only_when_a_run_changes(project: Path):
    index = project / "reports" / "README.ja.md"
    first = make(project, "index", "REPORT_LANG=ja")
    assert first.returncode == 0 and index.read_text().startswith("# 実行一覧"), first.stderr[-2000:]
    again = make(project, "index", "REPORT_LANG=ja")
    assert again.returncode == 0 and "-m pipeline index" not in again.stdout
    future = time.time() + 5
    os.utime(project / "runs" / "tiny" / "train" / "DONE", (future, future))
    changed = make(project, "index", "REPORT_LANG=ja")
    assert changed.returncode == 0 and "-m pipeline index" in changed.stdout
    write_experiment(project, "tiny_lr", {**TINY, "extends": "tiny", "train": {**TINY["train"], "lr": 1e-3}})
    assert make(project, "report", "EXP=tiny_lr").returncode == 0
    compare = make(project, "compare", "EXPS=tiny tiny_lr", "REPORT_LANG=ja")
    assert compare.returncode == 0, compare.stderr[-2000:]
    assert (project / "reports" / "compare" / "tiny-tiny_lr.ja.md").read_text().startswith("# 比較: tiny-tiny_lr")
    assert not (project / "reports" / "compare" / "tiny-tiny_lr.md").exists()
    no_exps = make(project, "compare")
    assert no_exps.returncode == 2 and "EXPS" in no_exps.stderr


def test_clean_removes_only_that_run(project: Path):
    (project / "runs" / "other").mkdir(parents=True, exist_ok=True)
    assert make(project, "clean", "EXP=tiny").returncode == 0
    assert not (project / "runs" / "tiny").exists() and (project / "runs" / "other").exists()
