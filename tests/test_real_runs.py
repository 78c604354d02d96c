"""Imports of the real runs in ../shared/real-runs/ (from public repositories, see each PROVENANCE.md) with
FROM=auto: the facts each PROVENANCE.md names, no false status, no stitched runs. Skipped when absent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.config.load import load_experiment
from pipeline.config.resolve import freeze
from pipeline.importers import run_import
from pipeline.report.checks import run_checks
from pipeline.report.loader import load_run
from pipeline.report.render import render
from pipeline.rundir import RunDir

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real-runs"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def imported(folder: str, **kw) -> tuple[Path, str, dict]:
    if not (REAL / folder).is_dir():
        pytest.skip(f"{REAL / folder} not present")
    run_dir = run_import(REAL / folder, "auto", folder.replace("-", "_"), **kw)
    cfg = load_experiment(run_dir.name)
    freeze(cfg, RunDir(run_dir))
    (report,) = render(run_dir, cfg, Path("reports") / run_dir.name)
    return run_dir, report.read_text(encoding="utf-8"), {f.rule: str(f.message) for f in run_checks(load_run(run_dir))}


def done(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "DONE").read_text())


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_hf_cpt_rouge_is_completed_with_rouge_and_predict(workdir):
    run_dir, report, found = imported("hf-trainer-cpt-rouge")
    assert (done(run_dir)["status"], done(run_dir)["steps_done"]) == ("completed", 5490)  # not "5,000 of 5,490"
    assert re.search(r"(✅|⚠️|❌) completed", report) and "run_incomplete" not in found
    extra = rows(run_dir / "train" / "extra.jsonl")
    assert sum("rouge-1" in r for r in extra if r["source"] == "eval") == 10
    assert sum(r["source"] == "predict" for r in extra) == 10
    assert "early-stopped" not in report


def test_hf_multi_eval_has_six_validation_curves(workdir):
    run_dir, report, _ = imported("hf-trainer-multi-eval")
    val = rows(run_dir / "train" / "validation.jsonl")
    assert sorted({r["dataset"] for r in val}) == [f"g{i}" for i in range(6)] and len(val) == 186
    assert all(f"### g{i}" in report for i in range(6))


def test_hf_summary_only_is_completed_with_eval_results(workdir):
    run_dir, report, _ = imported("hf-trainer-summary-only")
    assert (done(run_dir)["status"], done(run_dir)["steps_done"]) == ("completed", 78)
    (val,) = rows(run_dir / "train" / "validation.jsonl")
    assert val["val_perplexity"] == pytest.approx(5734.713433449494) and val["step"] == 78


def test_lightning_lr_monitor_rows_join_their_step(workdir):
    run_dir, report, _ = imported("lightning-lrmonitor-rope")
    metrics = rows(run_dir / "train" / "metrics.jsonl")
    assert all(r["lr"] == 0.001 for r in metrics) and metrics[-1]["step"] == 4000  # step 3999 + 1
    assert done(run_dir)["status"] == "unknown"  # max_epochs only: the length in steps is not recorded


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_lightning_logs_with_unrelated_runs_are_not_stitched(workdir):
    run_dir, report, found = imported("lightning-slm-training")
    record = json.loads((run_dir / "import" / "import.json").read_text())
    assert len(record["runs"]) == 7 and "version_0 + version_5" in [r["name"] for r in record["runs"]]
    assert next(r for r in record["runs"] if r["read"])["name"] == "version_12"
    assert "several_runs_in_source" in found and done(run_dir)["steps_done"] == 32050
    run_dir, _, _ = imported("lightning-slm-training", version="5")  # the true resume: joined, segments shown
    assert done(run_dir)["segments"] == 2 and done(run_dir)["steps_done"] == 197036


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_lingua_long_run_killed_at_20_percent(workdir):
    run_dir, report, found = imported("lingua-attamba-long-nores")
    assert (done(run_dir)["status"], done(run_dir)["steps_done"], done(run_dir)["steps_planned"]) == (
        "partial",
        20100,
        100000,
    )
    metrics = {r["step"]: r for r in rows(run_dir / "train" / "metrics.jsonl")}
    assert "evaluation" in metrics[5010]["interval_event"]  # the interval holding the step-5000 evaluation
    evals = [r for r in rows(run_dir / "train" / "extra.jsonl") if r["source"] == "eval"]
    assert [r["step"] for r in evals] == [5000, 10000, 15000, 20000]


def test_lingua_crash_before_step_one(workdir):
    run_dir, report, _ = imported("lingua-attamba-xmer65m-crashed")
    assert done(run_dir)["status"] == "failed_before_first_step" and "exited with code 1" in done(run_dir)["status_why"]
    assert "failed before the first step" in report


def test_lm_eval_groups_and_unix_date(workdir):
    run_dir, report, _ = imported("lm-eval-saucam-mmlu-groups")
    tasks = rows(run_dir / "eval" / "tasks.jsonl")
    assert {r["task"] for r in tasks if r.get("is_group")} == {
        "mmlu",
        "mmlu_humanities",
        "mmlu_other",
        "mmlu_social_sciences",
        "mmlu_stem",
    }
    timing = json.loads((run_dir / "eval" / "harness_timing.json").read_text())
    assert timing["time_utc"] == "2024-04-12T12:01:42+00:00"
    assert "### Groups" in report


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_lm_eval_math_hard_all_zero_fires_and_limit1_does_not(workdir):
    _, _, found = imported("lm-eval-kt-solar-mathhard")
    assert "all_zero_generative" in found and "7 generative task(s)" in found["all_zero_generative"]
    _, _, found = imported("lm-eval-kt-kmmlu-limit1")
    assert "all_zero_generative" not in found  # 1 item per task: too few to call the extraction broken
