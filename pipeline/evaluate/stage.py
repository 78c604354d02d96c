"""Eval stage: everything the `eval:` section asks for, written under `runs/<EXP>/eval/`.

Perplexity always; lm-evaluation-harness when `eval.harness.tasks` is not empty and the model is a transformers
one (a custom model that is not: skipped, the reason in `eval/DONE` `harness_skipped` and in the report).
`eval/DONE` marks the stage complete for Make.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import records
from pipeline.config.schema import Experiment
from pipeline.evaluate.harness import harness_skipped, run_harness
from pipeline.evaluate.perplexity import run_perplexity
from pipeline.rundir import RunDir

log = logging.getLogger(__name__)


def run_eval(cfg: Experiment, run_dir: Path) -> Path:
    run = RunDir(run_dir)
    run.eval_done.unlink(missing_ok=True)
    run_perplexity(cfg, run_dir)
    skipped = harness_skipped(cfg, run_dir)
    if skipped:
        log.warning("harness skipped: %s", skipped)
    harness = None if skipped else run_harness(cfg, run_dir)
    if harness is None:  # no tasks configured: drop results of an earlier config so the report cannot show them
        for file in (records.LM_EVAL, records.TASKS, records.HARNESS_TIMING):
            file.at(run.root).unlink(missing_ok=True)
        for old in records.samples_files(run.root):
            old.unlink()
    records.EVAL_DONE.write(
        run.root,
        {"perplexity": True, "harness": harness is not None, **({"harness_skipped": skipped} if skipped else {})},
    )
    return run.eval
