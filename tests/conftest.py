"""Shared fixtures: the repository root and tiny experiments that train in seconds on CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # present on developer machines and CI, absent on a user's clone

# A model and data small enough that a whole train stage takes a few seconds on 2 CPU cores.
TINY = {
    "description": "tiny test run",
    "model": {"arch": "llama", "dim": 32, "layers": 1, "heads": 2, "max_seq_len": 32},
    "data": {
        "source": {"type": "builtin", "name": "kjv"},
        "tokenizer": {"type": "bpe", "vocab_size": 300},
        "max_documents": 60,
        "seq_len": 32,
    },
    "train": {
        "steps": 12,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup_steps": 2,
        "log_every": 2,
        "eval_every": 4,
        "eval_batches": 2,
        "checkpoint_every": 5,
        "keep_checkpoints": 2,
        "seed": 0,
    },
    "eval": {"perplexity": {"batch_size": 4, "max_batches": 4}},
}


def write_experiment(root: Path, name: str, body: dict) -> Path:
    path = root / "experiments" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


# The train stage times matmuls for the MFU denominator (1 s on CPU by default); tests need the rate, not accuracy.
PEAK_SECONDS = "0.2"
os.environ.setdefault("LABNOTE_PEAK_SECONDS", PEAK_SECONDS)


def pipeline_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONUNBUFFERED": "1",
        "LABNOTE_PEAK_SECONDS": PEAK_SECONDS,
    }
    env.pop("LABNOTE_FAULT_AT_STEP", None)
    env.update(extra)
    return env


def pipeline_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A working directory with experiments/tiny.yaml (stages resolve experiments/ and runs/ from the cwd)."""
    write_experiment(tmp_path, "tiny", TINY)
    return tmp_path


def project_copy(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if rel.startswith(("runs/", "reports/")) or not (REPO / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    return dest
