"""The bring-your-own-trainer examples end to end on CPU, through Make in a copy of the repository: a plain PyTorch
loop (JSONL), a transformers.Trainer script (trainer_state.json) and a Lightning module (CSVLogger), each run by
`make report EXP=byo_*` as its train stage; and `byo_plain` through `make submit SCHED=slurm` on the real local
cluster (tests/slurm_cluster.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pipeline_env, project_copy
from slurm_cluster import slurm  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return project_copy(tmp_path_factory.mktemp("byo"))


def make(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or pipeline_env()
    env.pop("PYTHONPATH", None)  # the copy must work on its own: `python -m examples…` from the project root
    return subprocess.run(
        ["make", *args, f"PY={sys.executable}"], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize(
    "exp, example, logged, validated",
    [
        ("byo_plain", "plain_pytorch", 40, [10, 20, 30, 40]),
        ("byo_hf_trainer", "hf_trainer", 8, [20, 40]),
        ("byo_lightning", "lightning", 8, [20, 40]),
    ],
)
def test_example_gives_a_true_report(repo: Path, exp: str, example: str, logged: int, validated: list[int]):
    proc = make(repo, "report", f"EXP={exp}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"-m pipeline prepare runs/{exp}" not in proc.stdout  # the command has its own data
    run = repo / "runs" / exp
    metrics = [json.loads(line) for line in (run / "train/metrics.jsonl").read_text().splitlines()]
    validation = [json.loads(line) for line in (run / "train/validation.jsonl").read_text().splitlines()]
    assert len(metrics) == logged and metrics[-1]["step"] == 40 and metrics[-1]["loss"] < metrics[0]["loss"]
    assert [v["step"] for v in validation] == validated
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["train_command"]["exit_code"] == 0
    assert prov["train_command"]["command"].startswith(f"python -m examples.{example}.train ")
    report = (repo / "reports" / exp / "report.md").read_text()
    assert "— 40 of 40 configured steps" in report and "completed" in report.splitlines()[2]
    assert f"| Logs | `{prov['train_command']['logs']}`" in report
    again = make(repo, "report", f"EXP={exp}")
    assert again.returncode == 0 and f"-m pipeline train runs/{exp}" not in again.stdout  # nothing reruns


def test_byo_plain_runs_in_a_slurm_job(slurm, tmp_path: Path):  # noqa: F811
    root = project_copy(tmp_path)
    env = {**slurm.env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = make(root, "submit", "EXP=byo_plain", "SCHED=slurm", "SET=train.steps=20", env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in (root / "runs/byo_plain/jobs/submitted.jsonl").read_text().splitlines()]
    result = slurm.wait_for_job(record["job_id"], timeout=600)
    log = root / "runs" / "byo_plain" / "jobs" / f"slurm-{record['job_id']}.out"
    assert result.state == "COMPLETED" and result.exit_code == 0, log.read_text()[-3000:] if log.exists() else ""
    report = (root / "reports/byo_plain/report.md").read_text()
    assert "— 20 of 20 configured steps" in report and f"slurm job {record['job_id']}" in report
    prov = json.loads((root / "runs/byo_plain/provenance.json").read_text())
    assert prov["stages"]["train"]["job_id"] == record["job_id"] and prov["train_command"]["exit_code"] == 0
    assert "--steps 20 " in prov["train_command"]["command"]  # the SET override reached the command in the job
