"""Repeats and sweeps for real, through Make, at a tiny size: `make report EXP=smoke SEEDS="0 1 2" JOBS=2`, a
sweep with a member that dies (the others finish, the aggregate is still written), and `make submit
SCHED=slurm` of smoke_lr_sweep as a job array plus its afterany aggregate job on the local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, pipeline_env, project_copy, write_experiment
from slurm_cluster import slurm  # noqa: F401 - the fixture

from pipeline import records
from pipeline.config.resolve import load_resolved

pytestmark = pytest.mark.slow

# The smoke experiment at the size of the other Make tests (conftest.TINY): the point is the orchestration.
SMALL = (
    "data.max_documents=60 data.tokenizer.vocab_size=300 model.dim=32 model.layers=1 model.heads=2 "
    "model.max_seq_len=32 data.seq_len=32 train.steps=4 train.warmup_steps=1 train.batch_size=4 train.log_every=1 "
    "train.eval_every=2 train.eval_batches=2 train.checkpoint_every=4 eval.harness.tasks=[] "
    "eval.perplexity.max_batches=2 eval.perplexity.batch_size=4"
)


def make(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = pipeline_env(**env)
    environ.pop("PYTHONPATH")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # JOBS sets them for each member
        environ.pop(var, None)
    return subprocess.run(
        ["make", *args, f"PY={sys.executable}"], cwd=project, env=environ, capture_output=True, text=True, timeout=900
    )


def final_loss(run: Path) -> float:
    return records.METRICS.rows(run, [])[-1]["loss"]


def check_aggregate(proc: subprocess.CompletedProcess, report: Path, member_reports: list[str]) -> None:
    assert proc.returncode == 0 or "members failed" in proc.stderr, proc.stderr[-2000:]
    text = report.read_text()
    for rel in member_reports:  # each member's own report is linked from the aggregate
        assert rel in text, rel


def test_seeds_through_make(tmp_path: Path):
    project = project_copy(tmp_path)
    first = make(project, "report", "EXP=smoke", "SEEDS=0 1 2", "JOBS=2", f"SET={SMALL}")
    assert first.returncode == 0, first.stderr[-3000:]
    top = project / "runs" / "smoke"
    assert not (top / "config.yaml").exists()  # the experiment is its members; each is a complete run
    losses = []
    for seed in (0, 1, 2):
        run = top / f"seed-{seed}"
        assert f"-m pipeline train runs/smoke/seed-{seed}" in first.stdout
        assert records.MEMBER_STATUS.read(run).status == "completed"
        assert f"train.seed={seed}" in records.RESOLVE.read(run).overrides
        assert records.TRAIN_DONE.read(run).status == "completed"
        assert records.PROVENANCE.read(run).stages  # its own provenance
        assert (run / "stamps" / "train.sha256").is_file() and not (run / ".lock").exists()
        assert (project / "reports" / "smoke" / f"seed-{seed}" / "report.md").is_file()
        losses.append(final_loss(run))
    assert len(set(losses)) == 3, losses  # same config, different seeds: different runs
    # JOBS=2: the first two members ran side by side, each with half the cores' threads
    prov = [records.PROVENANCE.read(top / f"seed-{s}") for s in (0, 1)]
    first_two = [p.stages["prepare"] for p in prov]
    assert first_two[0].started_utc <= first_two[1].ended_utc
    assert first_two[1].started_utc <= first_two[0].ended_utc
    assert prov[0].env["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))
    check_aggregate(first, project / "reports" / "smoke" / "report.md", [f"seed-{s}/report.md" for s in (0, 1, 2)])
    assert "±" in (project / "reports" / "smoke" / "report.md").read_text()  # headline metrics as mean ± 95% CI

    # Fewer seeds: no member reruns; the aggregate is redone over the two (its member list changed).
    again = make(project, "report", "EXP=smoke", "SEEDS=0 1", "JOBS=2", f"SET={SMALL}")
    assert "-m pipeline train" not in again.stdout and "-m pipeline prepare" not in again.stdout
    assert "-m pipeline aggregate runs/smoke" in again.stdout
    assert [m.name for m in records.MEMBERS.read(top).members] == ["seed-0", "seed-1"]
    assert again.returncode == 0, again.stderr[-3000:]
    same = make(project, "report", "EXP=smoke", "SEEDS=0 1", f"SET={SMALL}")
    assert same.returncode == 0 and "-m pipeline aggregate" not in same.stdout  # nothing changed: nothing redone


def test_failing_member_does_not_sink_the_sweep(tmp_path: Path):
    """The member with 6 steps is SIGKILLed at step 5 (the train stage's fault hook); the other one finishes and
    the aggregate is written; make exits non-zero naming the failed member."""
    project = project_copy(tmp_path)
    write_experiment(project, "tiny", TINY)
    write_experiment(project, "fails", {"extends": "tiny", "sweep": {"zip": {"train.steps": [4, 6]}}})
    proc = make(project, "report", "EXP=fails", "JOBS=2", "SET=stages=[prepare,train]", LABNOTE_FAULT_AT_STEP="5")
    assert proc.returncode != 0
    top = project / "runs" / "fails"
    ok, dead = records.MEMBER_STATUS.read(top / "steps-4"), records.MEMBER_STATUS.read(top / "steps-6")
    assert ok.status == "completed" and records.TRAIN_DONE.read(top / "steps-4").steps_done == 4
    assert dead.status == "failed" and dead.exit_code != 0 and dead.error
    assert not records.TRAIN_DONE.read(top / "steps-6")  # killed before the end; its checkpoints stay for a resume
    assert "error: 1 of 2 members failed: steps-6 (exit" in proc.stderr
    assert "-m pipeline aggregate runs/fails" in proc.stdout  # written despite the failure
    assert (project / "reports" / "fails" / "steps-4" / "report.md").is_file()
    check_aggregate(proc, project / "reports" / "fails" / "report.md", ["steps-4/report.md"])


def test_sweep_as_a_slurm_job_array(slurm, tmp_path: Path):  # noqa: F811
    project = project_copy(tmp_path)
    env = {**slurm.env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        ["make", "submit", "EXP=smoke_lr_sweep", "SCHED=slurm", f"PY={sys.executable}", f"SET={SMALL}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    top = project / "runs" / "smoke_lr_sweep"
    array, aggregate = [json.loads(line) for line in (top / "jobs" / "submitted.jsonl").read_text().splitlines()]
    assert "#SBATCH --array=0-2" in (project / array["script"]).read_text()
    assert f"#SBATCH --dependency=afterany:{array['job_id']}" in (project / aggregate["script"]).read_text()

    tasks = slurm.wait_for_job(array["job_id"], timeout=900)
    assert len(tasks.records) == 3  # one per point
    final = slurm.wait_for_job(aggregate["job_id"], timeout=600)
    task_ids = {r["JobId"] for r in tasks.records}
    lrs = []
    for name in ("lr-1e-3", "lr-3e-3", "lr-1e-2"):
        status = records.MEMBER_STATUS.read(top / name)
        assert status.status == "completed", (top / name / "member.log").read_text()[-3000:]
        assert records.PROVENANCE.read(top / name).scheduler.job_id in task_ids  # ran as a task of the array
        lrs.append(load_resolved(top / name).train.lr)
    assert lrs == [1e-3, 3e-3, 1e-2]
    logs = "\n".join(p.read_text() for p in (top / "jobs").glob("slurm-*.out"))
    assert final.state == "COMPLETED", logs[-3000:]
    check_aggregate(proc, project / "reports" / "smoke_lr_sweep" / "report.md", ["lr-1e-3/report.md"])
