"""Eval stage: everything the `eval:` section asks for, written under `runs/<EXP>/eval/`.

Perplexity always; lm-evaluation-harness when `eval.harness.tasks` is not empty. `eval/DONE` marks the
stage complete for Make.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import records
from pipeline.config.schema import Experiment
from pipeline.evaluate.harness import run_harness
from pipeline.evaluate.perplexity import run_perplexity
from pipeline.rundir import RunDir


def run_eval(cfg: Experiment, run_dir: Path) -> Path:
    run = RunDir(run_dir)
    run.eval_done.unlink(missing_ok=True)
    run_perplexity(cfg, run_dir)
    harness = run_harness(cfg, run_dir)
    if harness is None:  # no tasks configured: drop results of an earlier config so the report cannot show them
        for file in (records.LM_EVAL, records.TASKS, records.HARNESS_TIMING):
            file.at(run.root).unlink(missing_ok=True)
        for old in records.samples_files(run.root):
            old.unlink()
    records.EVAL_DONE.write(run.root, {"perplexity": True, "harness": harness is not None})
    return run.eval
