"""`make submit SCHED=slurm` for real: a single-node Slurm cluster on localhost (tests/slurm_cluster.py)
runs the job script, which runs `make report` in the allocation; the report and provenance name the job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, project_copy, write_experiment
from slurm_cluster import slurm  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def test_submitted_smoke_job_writes_the_report(slurm, tmp_path: Path):  # noqa: F811
    project = project_copy(tmp_path)
    write_experiment(project, "tiny", TINY)
    env = {**slurm.env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["make", "submit", "EXP=tiny", "SCHED=slurm", f"PY={sys.executable}",
                           "SET=train.steps=6 train.checkpoint_every=3"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in (project / "runs/tiny/jobs/submitted.jsonl").read_text().splitlines()]
    assert record["sched"] == "slurm" and record["job_id"].isdigit()
    assert f"submitted as slurm job {record['job_id']}" in proc.stdout

    result = slurm.wait_for_job(record["job_id"], timeout=600)
    log = project / "runs" / "tiny" / "jobs" / f"slurm-{record['job_id']}.out"
    assert result.state == "COMPLETED" and result.exit_code == 0, log.read_text()[-3000:] if log.exists() else ""

    report = (project / "reports" / "tiny" / "report.md").read_text()
    assert "**Status: ✅ completed** — 6 of 6 configured steps" in report  # the SET override reached the job
    assert f"slurm job {record['job_id']}" in report
    prov = json.loads((project / "runs" / "tiny" / "provenance.json").read_text())
    assert prov["scheduler"] == {"scheduler": "slurm", "job_id": record["job_id"], "nodes": "localhost"}
    assert all(stage["job_id"] == record["job_id"] for stage in prov["stages"].values())
