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
    if cfg.train.command:
        return _eval_command_checkpoint(cfg, run)
    run_perplexity(cfg, run_dir)
    harness = run_harness(cfg, run_dir)
    if harness is None:  # no tasks configured: drop results of an earlier config so the report cannot show them
        for file in (records.LM_EVAL, records.TASKS, records.HARNESS_TIMING):
            file.at(run.root).unlink(missing_ok=True)
        for old in records.samples_files(run.root):
            old.unlink()
    records.EVAL_DONE.write(run.root, {"perplexity": True, "harness": harness is not None})
    return run.eval


def _eval_command_checkpoint(cfg: Experiment, run: RunDir) -> Path:
    """A train.command's `train.checkpoint` (a Hugging Face model folder): the lm-eval tasks on it. Perplexity
    needs labnote's own token streams (the prepare stage), which such a run does not have; a failed command has
    no model to evaluate."""
    from pipeline.errors import UserError
    from pipeline.train.external import Expanded

    done = records.TRAIN_DONE.read(run.root)
    if done.status == "failed":
        records.EVAL_DONE.write(run.root, {"perplexity": False, "harness": False, "status": "skipped"})
        return run.eval
    folder = Path(Expanded(cfg, run.root).checkpoint)
    if not (folder / "config.json").is_file():
        raise UserError(f"train.checkpoint: {folder}: no Hugging Face model folder there (config.json missing)")
    harness = run_harness(cfg, run.root, folder, done.steps_done)
    records.EVAL_DONE.write(run.root, {"perplexity": False, "harness": harness is not None})
    return run.eval
