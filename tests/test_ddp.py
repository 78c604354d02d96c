"""Data-parallel training for real: torchrun starts 2 CPU processes with the gloo backend. Their loss curve
must match one process that sees the same global batch, step for step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, pipeline_cmd, pipeline_env, write_experiment

# Gradients are summed by gloo in a different order than one backward pass over the whole batch, so the
# curves agree to float32 rounding, not bit for bit. Measured here: max |Δloss| 4.8e-7, |Δgrad norm| 1.2e-7.
TOLERANCE = 1e-4


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path):
    write_experiment(tmp_path, "one", {**TINY, "train": {**TINY["train"], "batch_size": 4}})
    write_experiment(
        tmp_path, "two", {**TINY, "train": {**TINY["train"], "batch_size": 2}, "hpc": {"gpus_per_node": 2}}
    )
    env = pipeline_env()
    for args in (("resolve", "one"), ("resolve", "two"), ("prepare", "runs/one")):
        assert subprocess.run(pipeline_cmd(*args), cwd=tmp_path, env=env).returncode == 0
    # The same data section: one prepare serves both runs (the stage would write the same files).
    shutil.copytree(tmp_path / "runs" / "one" / "prepared", tmp_path / "runs" / "two" / "prepared")
    single = subprocess.run(pipeline_cmd("train", "runs/one"), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    # What the Makefile runs when hpc.nodes x hpc.gpus_per_node > 1 (standalone rendezvous on one node).
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "pipeline",
            "train",
            "runs/two",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = metrics(tmp_path / "runs" / "one"), metrics(tmp_path / "runs" / "two")
    assert [m["step"] for m in one] == [m["step"] for m in two]
    assert [m["tokens"] for m in one] == [m["tokens"] for m in two]  # tokens count all ranks
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) < TOLERANCE, (a["step"], a["loss"], b["loss"])
        assert abs(a["grad_norm"] - b["grad_norm"]) < 10 * TOLERANCE
    done = json.loads((tmp_path / "runs" / "two" / "train" / "DONE").read_text())
    assert done["world_size"] == 2 and done["tokens_per_step"] == 4 * 32
    # only rank 0 wrote: one metrics line per log step, one set of checkpoints
    assert len(two) == 6 and sorted(p.name for p in (tmp_path / "runs" / "two" / "checkpoints").iterdir()) == [
        "0000000010",
        "0000000012",
    ]


def test_make_launches_torchrun_for_several_processes(tmp_path: Path):
    from conftest import REPO

    proc = subprocess.run(
        [
            "make",
            "-n",
            "-C",
            str(REPO),
            "_train",
            "EXP=ddp_probe",
            "TRAIN_NPROC=4",
            "TRAIN_NNODES=2",
            f"PY={sys.executable}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "pipeline train" in line)
    assert line.startswith("srun --ntasks-per-node=1")
    assert "-m torch.distributed.run --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d" in line
    assert "--rdzv_endpoint=${LABNOTE_RDZV_HOST:-localhost}:29500" in line
