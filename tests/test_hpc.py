"""Job scripts for `make submit`. PJM cannot run here, so its script is checked against the directives the
seed projects used on GENKAI; Slurm runs for real in test_slurm_submit.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, write_experiment

from pipeline.config.load import load_experiment
from pipeline.errors import ConfigError, UserError
from pipeline.hpc.submit import make_command, parse_job_id, render_job


def cfg(tmp_path: Path, **hpc):
    write_experiment(tmp_path, "job", {**TINY, "hpc": hpc})
    return load_experiment("job", root=tmp_path / "experiments")


def directives(script: str, prefix: str) -> list[str]:
    return [line[len(prefix) :].strip() for line in script.splitlines() if line.startswith(prefix)]


def test_pjm_script_has_the_genkai_directives(tmp_path: Path):
    c = cfg(
        tmp_path,
        partition="b-batch",
        gpus_per_node=1,
        time="2:00:00",
        account="gk77",
        modules=["cuda/12.2.2"],
        extra_directives=["--mail-list me@example.org"],
    )
    script = render_job(c, "pjm", [], "RUNTIME=apptainer SIF=/data/labnote.sif", Path("/proj"))
    assert directives(script, "#PJM") == [
        "-N labnote-job",
        "-L rscgrp=b-batch",
        "-L gpu=1",
        "-L elapse=2:00:00",
        "-g gk77",
        "-j",
        "-o /proj/runs/job/jobs/pjm-%j.out",
        "--mail-list me@example.org",
    ]
    assert "module load cuda/12.2.2" in script
    assert script.rstrip().endswith("make report EXP=job RUNTIME=apptainer SIF=/data/labnote.sif")
    assert "\ncd /proj\n" in script


def test_unquoted_yaml_time_is_read_back_as_hh_mm_ss(tmp_path: Path):
    write_experiment(tmp_path, "t", {**TINY})
    (tmp_path / "experiments" / "t.yaml").write_text(
        (tmp_path / "experiments" / "t.yaml").read_text() + "hpc:\n  time: 2:00:00\n"
    )
    assert load_experiment("t", root=tmp_path / "experiments").hpc.time == "2:00:00"


def test_pjm_refuses_several_nodes(tmp_path: Path):
    with pytest.raises(ConfigError, match="hpc.nodes"):
        render_job(cfg(tmp_path, nodes=2, gpus_per_node=4), "pjm", [], "", Path("/proj"))


def test_slurm_script_resources_and_overrides(tmp_path: Path):
    c = cfg(tmp_path, partition="gpu", nodes=2, gpus_per_node=4, cpus_per_task=16, mem="64G", time="04:00:00")
    script = render_job(c, "slurm", ["train.steps=50", "model.dim=64"], "PY=/opt/env/bin/python", Path("/proj"))
    assert directives(script, "#SBATCH") == [
        "--job-name=labnote-job",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=4",
        "--cpus-per-task=16",
        "--mem=64G",
        "--time=04:00:00",
        "--partition=gpu",
        "--output=/proj/runs/job/jobs/slurm-%j.out",
    ]
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script
    assert script.rstrip().endswith("make report EXP=job PY=/opt/env/bin/python 'SET=train.steps=50 model.dim=64'")


@pytest.mark.parametrize(
    "sched, out, job",
    [
        ("slurm", "4242\n", "4242"),
        ("slurm", "77;cluster\n", "77"),
        ("pjm", "[INFO] PJM 0000 pjsub Job 3849979 submitted.\n", "3849979"),
    ],
)
def test_job_ids_are_parsed(sched, out, job):
    assert parse_job_id(sched, out) == job


def test_unparseable_submit_output_is_an_error():
    with pytest.raises(UserError, match="could not read a job id"):
        parse_job_id("pjm", "[ERR.] PJM 0007 pjsub Staging option error")


def test_make_command_quotes_overrides(tmp_path: Path):
    """The job's SET= is split again by load_experiment: a value with spaces or quotes comes back as one item."""
    import shlex

    from pipeline.config.load import split_overrides

    items = ["report.title=A B", 'report.redact=["it\'s"]', "train.lr=0.1"]
    words = shlex.split(make_command(cfg(tmp_path), items, ""))
    assert words[:3] == ["make", "report", "EXP=job"] and words[3].startswith("SET=")
    assert split_overrides([words[3].removeprefix("SET=")]) == items


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_dry_run_writes_the_script_into_the_run_dir(tmp_path: Path):
    write_experiment(tmp_path, "tiny", TINY)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "submit",
            "tiny",
            "--sched",
            "pjm",
            "--dry-run",
            "--set",
            "hpc.partition=b-batch",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (script,) = (tmp_path / "runs" / "tiny" / "jobs").glob("pjm-*.sh")
    assert "#PJM -L rscgrp=b-batch" in script.read_text() and "dry run" in proc.stdout
    assert (tmp_path / "runs" / "tiny" / "config.yaml").is_file()  # the job reads the same frozen config


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_missing_sbatch_is_one_clear_line(tmp_path: Path):
    write_experiment(tmp_path, "tiny", TINY)
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "submit", "tiny", "--sched", "slurm"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: sbatch: not found")


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_dry_run_and_check_leave_an_existing_run_as_it_was(tmp_path: Path):
    """A dry run writes only its job script; `check` writes nothing: a run's config (which comparisons read)
    never gains the hpc.* keys of a job that was only rendered."""
    write_experiment(tmp_path, "tiny", TINY)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc

    cli("resolve", "tiny")
    run = tmp_path / "runs" / "tiny"
    before = _snapshot(run)
    cli("submit", "tiny", "--sched", "slurm", "--dry-run", "--set", "hpc.partition=gpu hpc.gpus_per_node=4")
    after = _snapshot(run)
    added = sorted(set(after) - set(before))
    assert len(added) == 1 and added[0].startswith("jobs/slurm-") and added[0].endswith(".sh")
    assert {k: v for k, v in after.items() if k in before} == before  # config.yaml and the stamps untouched
    cli("resolve", "tiny", "--check", "--set", "train.lr=0.5")
    assert _snapshot(run) == after
