"""Eval stage: everything the `eval:` section asks for, written under `runs/<EXP>/eval/`."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.schema import Experiment
from pipeline.evaluate.perplexity import run_perplexity


def run_eval(cfg: Experiment, run_dir: Path) -> Path:
    return run_perplexity(cfg, run_dir)
