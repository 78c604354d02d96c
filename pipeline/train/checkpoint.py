"""Checkpoints: `checkpoints/<step, 10 digits>/` = Hugging Face model + tokenizer + train_state.pt + config.yaml.

A checkpoint is built in `<step>.tmp/` and renamed into place, and counts as complete only once it holds
`train_state.pt`, so a run killed mid-save resumes from the previous one. It also carries `checksums.json`
(size and sha256 of each of its files): `newest_intact` verifies them and moves a damaged checkpoint aside to
`checkpoints/<step>.damaged/` (with `WHY.txt`), so resume falls back to the newest intact one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_dir, sha256_file
from pipeline.redact import scrub
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
        (tmp / "config.yaml").write_text(scrub(config_yaml), encoding="utf-8")
        torch.save({**train_state, "step": step, "rng": rng_state()}, tmp / "train_state.pt")
        write_checksums(tmp)
    for old in run.checkpoint_dirs()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


CHECKSUMS = "checksums.json"


def write_checksums(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    sums = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
    (folder / CHECKSUMS).write_text(json.dumps(sums, indent=1) + "\n", encoding="utf-8")


def verify(folder: Path) -> str | None:
    """Why a checkpoint cannot be trusted (a file missing, cut short or changed), or None when it is intact.
    Checkpoints from before checksums existed are tried by loading their train state."""
    listed = folder / CHECKSUMS
    if not listed.is_file():
        try:
            load_train_state(folder)
        except Exception as exc:  # noqa: BLE001 - any failure to read means: do not resume from it
            return f"train_state.pt cannot be read ({type(exc).__name__})"
        return None
    try:
        sums = json.loads(listed.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return f"{CHECKSUMS} is damaged"
    for rel, want in sums.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        size = path.stat().st_size
        if size != want.get("bytes"):
            return f"{rel} has {size:,d} bytes, {want.get('bytes'):,d} were written"
        if sha256_file(path) != want.get("sha256"):
            return f"{rel} does not match its sha256"
    return None


def newest_intact(run: RunDir, log=None) -> Path | None:
    """The newest checkpoint whose files verify; damaged newer ones are moved to `<step>.damaged/`."""
    for folder in reversed(run.checkpoint_dirs()):
        why = verify(folder)
        if why is None:
            return folder
        aside = folder.with_name(folder.name + ".damaged")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(folder, aside)
        (aside / "WHY.txt").write_text(f"{why}\n", encoding="utf-8")
        if log is not None:
            log.warning("checkpoint %s is damaged (%s): moved to %s; using an older one", folder.name, why, aside)
    return None


def damage_notes(run: RunDir) -> list[str]:
    """One line per checkpoint moved aside as damaged (for train/DONE `repairs` and the report)."""
    if not run.checkpoints.is_dir():
        return []
    notes = []
    for aside in sorted(run.checkpoints.glob("*.damaged")):
        why = (aside / "WHY.txt").read_text(encoding="utf-8").strip() if (aside / "WHY.txt").is_file() else "?"
        notes.append(f"checkpoints/{aside.name.removesuffix('.damaged')}: {why}; not used (moved to {aside.name})")
    return notes


def load_train_state(path: Path) -> dict:
    # weights_only=False: the state holds numpy RNG tuples; the file is one this stage wrote itself.
    return torch.load(path / "train_state.pt", map_location="cpu", weights_only=False)


def checkpoint_size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
