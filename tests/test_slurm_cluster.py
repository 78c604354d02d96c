"""The local Slurm cluster used by Slurm tests: jobs run, fail and fan out, and nothing outlives the fixture.

Needs root and `bash .ci/install-slurm.sh`; skips without them (fails instead with LABNOTE_REQUIRE_SLURM=1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from slurm_cluster import LocalSlurm, SlurmError, port_in_use, process_alive, require_slurm, slurm  # noqa: F401

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and process_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.fixture
def cluster_dir():
    require_slurm()
    base = Path(tempfile.mkdtemp(prefix="labnote-slurm-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_job_completes_and_writes_its_file(slurm, tmp_path):
    job = slurm.submit("--wrap", "echo hi > out.txt", cwd=tmp_path)
    result = slurm.wait_for_job(job, timeout=60)
    assert (result.state, result.exit_code, result.signal) == ("COMPLETED", 0, 0)
    assert (tmp_path / "out.txt").read_text() == "hi\n"


def test_failing_job_reports_failed_and_its_exit_code(slurm, tmp_path):
    job = slurm.submit("--wrap", "exit 3", cwd=tmp_path)
    result = slurm.wait_for_job(job, timeout=60)
    assert (result.state, result.exit_code) == ("FAILED", 3)


def test_job_array_runs_every_task(slurm, tmp_path):
    job = slurm.submit(
        "-a",
        "0-2",
        "-o",
        "slurm-%A_%a.out",
        "--wrap",
        'echo "task $SLURM_ARRAY_TASK_ID" > "task-$SLURM_ARRAY_TASK_ID.txt"',
        cwd=tmp_path,
    )
    result = slurm.wait_for_job(job, timeout=90)
    assert result.state == "COMPLETED"
    assert sorted(r["ArrayTaskId"] for r in result.records) == ["0", "1", "2"]
    for i in range(3):
        assert (tmp_path / f"task-{i}.txt").read_text() == f"task {i}\n"


def test_nothing_outlives_the_cluster(cluster_dir, tmp_path):
    with LocalSlurm(cluster_dir) as cluster:
        pids = dict(cluster.pids)
        ports = cluster.ports
        assert set(pids) == {"munged", "slurmctld", "slurmd"}
        assert all(process_alive(pid) for pid in pids.values())
        # A job still running at exit is cancelled, not left behind.
        job = cluster.submit("--wrap", "sleep 297", cwd=tmp_path)
        deadline = time.monotonic() + 30
        while cluster.job_records(job)[0]["JobState"] != "RUNNING" or not _processes_mentioning("sleep 297"):
            assert time.monotonic() < deadline, "the sleep job never started"
            time.sleep(0.1)
    assert not [name for name, pid in pids.items() if process_alive(pid)]
    assert _processes_mentioning(str(cluster_dir)) == []
    assert not any(port_in_use(p) for p in ports)
    assert _processes_mentioning("sleep 297") == []


def test_failed_start_stops_what_had_started(cluster_dir):
    class BrokenSlurmd(LocalSlurm):
        def _start_slurmd(self):
            raise SlurmError("simulated slurmd failure")

    cluster = BrokenSlurmd(cluster_dir)
    with pytest.raises(SlurmError, match="simulated"):
        cluster.start()
    assert set(cluster.pids) == {"munged", "slurmctld"}
    assert not [name for name, pid in cluster.pids.items() if process_alive(pid)]
    assert _processes_mentioning(str(cluster_dir)) == []
