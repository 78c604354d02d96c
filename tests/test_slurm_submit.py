"""`make submit SCHED=slurm` for real: a single-node Slurm cluster on localhost (tests/slurm_cluster.py)
runs the job script, which runs `make report` in the allocation; the report and provenance name the job."""

from __future__ import annotations

import json
import re
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
    proc = subprocess.run(
        [
            "make",
            "submit",
            "EXP=tiny",
            "SCHED=slurm",
            f"PY={sys.executable}",
            "SET=train.steps=6 train.checkpoint_every=3",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in (project / "runs/tiny/jobs/submitted.jsonl").read_text().splitlines()]
    assert record["sched"] == "slurm" and record["job_id"].isdigit()
    assert f"submitted as slurm job {record['job_id']}" in proc.stdout

    result = slurm.wait_for_job(record["job_id"], timeout=600)
    log = project / "runs" / "tiny" / "jobs" / f"slurm-{record['job_id']}.out"
    assert result.state == "COMPLETED" and result.exit_code == 0, log.read_text()[-3000:] if log.exists() else ""

    report = (project / "reports" / "tiny" / "report.md").read_text()
    assert re.search(
        r"\*\*Status: (✅|⚠️|❌) completed[^*]*\*\* — 6 of 6 configured steps", report
    )  # the SET override reached the job
    assert f"slurm job {record['job_id']}" in report
    prov = json.loads((project / "runs" / "tiny" / "provenance.json").read_text())
    assert prov["scheduler"] == {"scheduler": "slurm", "job_id": record["job_id"], "nodes": "localhost"}
    assert all(stage["job_id"] == record["job_id"] for stage in prov["stages"].values())


def test_bench_variants_run_as_a_job_array(slurm, tmp_path: Path):  # noqa: F811
    project = project_copy(tmp_path)
    bench = {
        "workload": "train",
        "seq_len": 16,
        "steps": 2,
        "warmup_steps": 1,
        "repeats": 1,
        "fixed": {
            "precision": "fp32",
            "attn_implementation": "sdpa",
            "finetune": "full",
            "lora_r": 4,
            "grad_accum": 1,
            "batch_size": 2,
            "compile": False,
            "num_workers": 0,
            "use_cache": True,
            "gradient_checkpointing": False,
        },
        "variants": [{"name": "fp32"}, {"name": "accum2", "grad_accum": 2}, {"name": "broken"}],
    }
    write_experiment(
        project, "sweep", {**TINY, "stages": ["bench"], "model": {**TINY["model"], "vocab_size": 300}, "bench": bench}
    )
    # The variant "broken" raises in its array task (test hook, inherited through sbatch's environment).
    env = {**slurm.env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LABNOTE_FAULT_VARIANT": "broken"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["make", "submit", "EXP=sweep", "SCHED=slurm", "BENCH_ARRAY=1", f"PY={sys.executable}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    array, report = [
        json.loads(line) for line in (project / "runs/sweep/jobs/submitted.jsonl").read_text().splitlines()
    ]
    assert "bench-array" in array["script"] and "bench-report" in report["script"]
    assert "#SBATCH --array=0-2" in (project / array["script"]).read_text()
    assert f"#SBATCH --dependency=afterany:{array['job_id']}" in (project / report["script"]).read_text()

    tasks = slurm.wait_for_job(array["job_id"], timeout=600)
    assert len(tasks.records) == 3  # one record per array task
    final = slurm.wait_for_job(report["job_id"], timeout=600)
    assert final.state == "COMPLETED", (project / "runs/sweep/jobs").glob("*.out")
    summary = json.loads((project / "runs/sweep/bench/summary.json").read_text())["variants"]
    assert summary["fp32"]["status"] == "ok" and summary["accum2"]["status"] == "ok"
    assert summary["broken"]["status"] == "failed" and "injected fault" in summary["broken"]["errors"][0]
    assert sorted(p.name for p in (project / "runs/sweep/bench/parts").iterdir()) == [
        "0000.jsonl",
        "0001.jsonl",
        "0002.jsonl",
    ]
    assert "## Benchmark sweep" in (project / "reports/sweep/report.md").read_text()
