"""Provenance: what is recorded about where a stage ran, and what is never recorded (secrets)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.provenance import container_info, record_stage, safe_environment, scheduler_info
from pipeline.rundir import RunDir


def test_secret_looking_variables_are_never_recorded():
    env = {
        "WANDB_API_KEY": "0123abcd",
        "HF_TOKEN": "hf_xxx",
        "HF_HOME": "/data/hf",
        "SLURM_JOB_ID": "42",
        "AWS_SECRET_ACCESS_KEY": "s",
        "MY_PASSWORD": "p",
        "HOME": "/root",
        "NCCL_DEBUG": "INFO",
        "GITHUB_TOKEN": "t",
        "PJM_JOBID": "7",
    }
    kept = safe_environment(env)
    assert kept == {"HF_HOME": "/data/hf", "NCCL_DEBUG": "INFO", "PJM_JOBID": "7", "SLURM_JOB_ID": "42"}


def test_scheduler_and_container_are_read_from_the_environment():
    assert scheduler_info({"SLURM_JOB_ID": "3849979", "SLURM_JOB_NODELIST": "b0031"}) == {
        "scheduler": "slurm",
        "job_id": "3849979",
        "nodes": "b0031",
    }
    assert scheduler_info({"PJM_JOBID": "3849979"}) == {"scheduler": "pjm", "job_id": "3849979"}
    assert scheduler_info({})["scheduler"] is None
    info = container_info({"APPTAINER_CONTAINER": "/scratch/labnote.sif", "LABNOTE_IMAGE_SHA256": "ab" * 32})
    assert info == {"runtime": "apptainer", "image": "/scratch/labnote.sif", "sha256": "ab" * 32}


def test_record_stage_merges_stages_and_writes_no_secret(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value")
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    run = RunDir(tmp_path / "runs" / "x")
    run.root.mkdir(parents=True)
    record_stage(run, "train", "t0", "t1", 1.5, "hash1")
    record_stage(run, "eval", "t2", "t3", 0.5, "hash1")
    text = run.provenance.read_text()
    assert "wandb-secret-value" not in text and "WANDB_API_KEY" not in text
    prov = json.loads(text)
    assert set(prov["stages"]) == {"train", "eval"} and prov["stages"]["train"]["duration_s"] == 1.5
    assert prov["scheduler"]["job_id"] == "99" and prov["env"]["SLURM_JOB_ID"] == "99"
    assert prov["versions"]["torch"] and prov["device"]["cpu"]
