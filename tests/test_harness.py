"""The eval stage's lm-evaluation-harness path for real on CPU: a trained tiny checkpoint, the local tasks,
lm-eval's own `simple_evaluate`; and the one-line error when a hub task is not cached offline."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from conftest import TINY, pipeline_cmd, pipeline_env, write_experiment

pytestmark = pytest.mark.slow

HARNESS = {
    "tasks": [
        "labnote_cloze",
        {"task": "labnote_nextword", "num_fewshot": 2, "limit": 12},
        {"task": "labnote_rolling", "limit": 5},
    ],
    "batch_size": 16,
}


def run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        pipeline_cmd(*args), cwd=project, env=pipeline_env(**env), capture_output=True, text=True, timeout=600
    )
    return proc


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("harness")
    body = {
        **TINY,
        "model": {**TINY["model"], "max_seq_len": 64},
        "data": {**TINY["data"], "seq_len": 32},
        "train": {**TINY["train"], "steps": 4, "checkpoint_every": 4},
        "eval": {**TINY["eval"], "harness": HARNESS},
    }
    write_experiment(project, "tiny", body)
    for args in (("resolve", "tiny"), ("prepare", "runs/tiny"), ("train", "runs/tiny"), ("eval", "runs/tiny")):
        proc = run(project, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return project / "runs" / "tiny"


def test_results_are_lm_evals_own(evaluated: Path):
    result = json.loads((evaluated / "eval" / "lm_eval.json").read_text())
    assert set(result["results"]) == {"labnote_cloze", "labnote_nextword", "labnote_rolling"}
    assert result["n-shot"]["labnote_nextword"] == 2 and result["n-shot"]["labnote_cloze"] == 0
    assert result["n-samples"]["labnote_nextword"]["effective"] == 12
    assert result["n-samples"]["labnote_rolling"]["effective"] == 5
    assert result["n-samples"]["labnote_cloze"]["effective"] == result["n-samples"]["labnote_cloze"]["original"]


def test_normalised_table_equals_lm_eval_numbers(evaluated: Path):
    result = json.loads((evaluated / "eval" / "lm_eval.json").read_text())
    rows = [json.loads(line) for line in (evaluated / "eval" / "tasks.jsonl").read_text().splitlines()]
    assert {(r["task"], r["metric"]) for r in rows} >= {
        ("labnote_cloze", "acc"),
        ("labnote_cloze", "acc_norm"),
        ("labnote_nextword", "exact_match"),
        ("labnote_rolling", "word_perplexity"),
        ("labnote_rolling", "bits_per_byte"),
    }
    for r in rows:
        key = f"{r['metric']},{r['filter']}"
        assert r["value"] == result["results"][r["task"]][key]
        stderr = result["results"][r["task"]][f"{r['metric']}_stderr,{r['filter']}"]
        assert r["stderr"] == (stderr if isinstance(stderr, (int, float)) else None)
        assert r["n"] == result["n-samples"][r["task"]]["effective"]
        assert r["higher_is_better"] == result["higher_is_better"][r["task"]][r["metric"]]
    cloze = next(r for r in rows if r["task"] == "labnote_cloze" and r["metric"] == "acc")
    assert cloze["chance"] == pytest.approx(0.25)  # measured from 4 requests per item
    rolling = next(r for r in rows if r["metric"] == "word_perplexity")
    assert rolling["chance"] is None and math.isfinite(rolling["value"]) and rolling["value"] > 1


def test_timing_split_is_recorded(evaluated: Path):
    timing = json.loads((evaluated / "eval" / "harness_timing.json").read_text())
    req = timing["requests"]
    assert req["loglikelihood"]["requests"] == 300 * 4  # every cloze item, one request per choice
    assert req["generate_until"]["requests"] == 12
    assert req["loglikelihood_rolling"]["requests"] == 5
    assert all(req[k]["seconds"] > 0 for k in req)
    assert timing["total_s"] >= sum(req[k]["seconds"] for k in req)
    assert timing["items"] == {"labnote_cloze": 300, "labnote_nextword": 12, "labnote_rolling": 5}


def test_report_shows_harness_and_flags(evaluated: Path, tmp_path: Path):
    from pipeline.config.resolve import load_resolved
    from pipeline.report.render import render

    (report,) = render(evaluated, load_resolved(evaluated), tmp_path)
    text = report.read_text()
    assert "## lm-evaluation-harness" in text and "| labnote_cloze" in text
    assert "generate_until" in text and "loglikelihood_rolling" in text
    assert "`subset_only`" in text and "labnote_nextword 12 of" in text
    assert "`at_chance`" in text  # 4 training steps cannot beat guessing on the cloze task


def test_uncached_hub_task_is_one_clear_line(evaluated: Path, tmp_path: Path):
    project = evaluated.parents[1]
    write_experiment(project, "hubtask", {**TINY, "extends": None})
    run_dir = "runs/tiny"
    proc = run(project, "resolve", "tiny", "--run-dir", run_dir, "--set", "eval.harness.tasks=[piqa]")
    assert proc.returncode == 0
    proc = run(project, "eval", run_dir, HF_HOME=str(tmp_path / "empty"))
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "eval.harness.tasks" in lines[0] and "piqa" in lines[0] and "make data EXP=tiny" in lines[0]


def test_per_item_results_are_kept_for_paired_comparisons(evaluated: Path):
    """eval/samples/<task>.jsonl: one line per item lm-eval scored (its own log_samples), identified by doc_id and
    doc_hash, without the documents' text; as many items as lm-eval says it evaluated."""
    result = json.loads((evaluated / "eval" / "lm_eval.json").read_text())
    for task, counts in result["n-samples"].items():
        lines = [json.loads(line) for line in (evaluated / "eval" / "samples" / f"{task}.jsonl").open()]
        assert len({row["doc_id"] for row in lines}) == counts["effective"], task
        assert all("doc_hash" in row and "doc" not in row and "arguments" not in row for row in lines)
