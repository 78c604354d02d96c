"""Checkpoints: `checkpoints/<step, 10 digits>/` = Hugging Face model + tokenizer + train_state.pt + config.yaml.

A checkpoint is built in `<step>.tmp/` and renamed into place, and counts as complete only once it holds
`train_state.pt`, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_dir
from pipeline.rundir import RunDir


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run: RunDir, step: int, model, tokenizer, train_state: dict, config_yaml: str, keep: int) -> Path:
    final = run.checkpoints / f"{step:010d}"
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
        torch.save({**train_state, "step": step, "rng": rng_state()}, tmp / "train_state.pt")
    for old in run.checkpoint_dirs()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_train_state(path: Path) -> dict:
    # weights_only=False: the state holds numpy RNG tuples; the file is one this stage wrote itself.
    return torch.load(path / "train_state.pt", map_location="cpu", weights_only=False)


def checkpoint_size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
