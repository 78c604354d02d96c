"""Synthetic runs of other tools, of any length, for the import benchmarks (`import_scale.py`, `scale.py`).

One function per tool: `write_<tool>(folder, entries) -> Path` writes a run of `entries` logged records into
`folder` and returns the SRC to import (`python -m pipeline import SRC=<it> FROM=<tool>`). The files are written
by the tools' own writers wherever they are installed here, so their shape is the tools' own:

    write_hf_trainer    transformers' `TrainerState.save_to_json` (trainer_state.json: log_history entries,
                        an eval entry after every 9 training logs, the end-of-training summary) + config.json
    write_lightning     pytorch_lightning's `CSVLogger` (metrics.csv rows as a LearningRateMonitor, training
                        and validation steps log them; hparams.yaml)
    write_lingua        Meta Lingua is not installable: metrics.jsonl lines and config.yaml in the shape
                        tests/import_fixtures.py writes as Lingua's MetricLogger does (one place for that shape)
    write_tensorboard   torch's `SummaryWriter` exactly as transformers' TensorBoardCallback calls it (`args` text,
                        then one `add_scalar` per logged value: train/loss, train/grad_norm, … per entry)
    write_wandb         `wandb.init(mode="offline")` + `wandb.log` in a subprocess (its own WANDB_DIR)
    write_lm_eval       lm-eval's results file (tests/import_fixtures.py's shape) and a samples_<task>_<time>.jsonl
                        of `entries` items in the shape lm-eval's EvaluationTracker writes

An "entry" is one record the tool logs: a log_history entry, a metrics.csv row, a metrics.jsonl line, one
`on_log` call (several scalars), one `wandb.log` call, one sample line. Values are deterministic (no clock, no
randomness) so two runs of a benchmark read the same bytes.

    >>> import tempfile
    >>> src = write_hf_trainer(Path(tempfile.mkdtemp()), 25)
    >>> state = json.loads((src / "trainer_state.json").read_text())
    >>> len(state["log_history"]), state["log_history"][-1]["train_runtime"] > 0
    (25, True)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EVAL_EVERY = 10  # every 10th entry is an evaluation (HF, TensorBoard, W&B) or a validation row (Lightning)


def _loss(step: int) -> float:
    return 4.0 * (10 / (step + 10)) ** 0.3


# --------------------------------------------------------------------------- Hugging Face Trainer
def hf_log_history(entries: int, logging_steps: int = 10) -> list[dict]:
    """`entries` log_history entries as the Trainer appends them: a training log every `logging_steps`, an
    evaluation after every 9 of them (at the same step), the end-of-training summary last."""
    history, step = [], 0
    while len(history) < entries - 1:
        if len(history) % EVAL_EVERY == EVAL_EVERY - 1:
            history.append(
                {
                    "epoch": step / 1000,
                    "eval_loss": _loss(step) + 0.05,
                    "eval_runtime": 12.3456,
                    "eval_samples_per_second": 81.002,
                    "eval_steps_per_second": 10.125,
                    "step": step,
                }
            )
            continue
        step += logging_steps
        history.append(
            {
                "epoch": step / 1000,
                "grad_norm": 1.5 + 40.0 / step,
                "learning_rate": 5e-05 * (1 - step / (10 * logging_steps * entries)),
                "loss": _loss(step),
                "step": step,
            }
        )
    history.append(
        {
            "epoch": step / 1000,
            "step": step,
            "total_flos": 1.2345678e15,
            "train_loss": 2.1234567,
            "train_runtime": 812.3456,
            "train_samples_per_second": 19.696,
            "train_steps_per_second": 0.616,
        }
    )
    return history[:entries]


def write_hf_trainer(folder: Path, entries: int) -> Path:
    """An HF output_dir: trainer_state.json (`TrainerState.save_to_json`, the Trainer's writer) + config.json."""
    from transformers import GPT2Config, TrainerState

    folder.mkdir(parents=True, exist_ok=True)
    history = hf_log_history(entries)
    steps = max(e["step"] for e in history)
    state = TrainerState(
        epoch=history[-1]["epoch"],
        global_step=steps,
        max_steps=steps,
        logging_steps=10,
        eval_steps=10 * EVAL_EVERY,
        train_batch_size=8,
        num_train_epochs=1,
        log_history=history,
    )
    state.save_to_json(str(folder / "trainer_state.json"))
    GPT2Config(
        n_embd=64, n_layer=2, n_head=2, n_positions=128, vocab_size=256, bos_token_id=None, eos_token_id=None
    ).to_json_file(folder / "config.json")
    return folder


# --------------------------------------------------------------------------- PyTorch Lightning
def write_lightning(folder: Path, entries: int) -> Path:
    """`CSVLogger(folder)` as a Trainer with LearningRateMonitor drives it: per optimizer step an `lr-AdamW` row
    and a `train_loss_step` row; every 10th entry a validation row (`val_loss`). Returns lightning_logs/version_0."""
    from pytorch_lightning.loggers import CSVLogger

    logger = CSVLogger(str(folder))
    logger.log_hyperparams({"cfg": {"trainer": {"max_steps": entries}}, "lr": 1e-3, "batch_size": 16})
    step, n = 0, 0
    while n < entries:
        if n % EVAL_EVERY == EVAL_EVERY - 1:
            logger.log_metrics({"val_loss": _loss(step) + 0.05, "epoch": step // 1000}, step=step)
        elif n % 2 == 0:
            step += 1
            logger.log_metrics({"lr-AdamW": 1e-3 * (1 - step / (entries + 1))}, step=step)
        else:
            logger.log_metrics({"train_loss_step": _loss(step), "epoch": step // 1000}, step=step)
        n += 1
    logger.save()
    logger.finalize("success")
    return Path(logger.log_dir)


# --------------------------------------------------------------------------- Meta Lingua
def write_lingua(folder: Path, entries: int) -> Path:
    """A Lingua dump_dir: config.yaml (`steps`) and metrics.jsonl of `entries` lines, one per log step."""
    import yaml

    from tests.import_fixtures import lingua_config, lingua_metric

    folder.mkdir(parents=True, exist_ok=True)
    steps = 10 * entries
    (folder / "config.yaml").write_text(yaml.safe_dump(lingua_config(steps)), encoding="utf-8")
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for i in range(1, entries + 1):
            step = 10 * i
            fh.write(json.dumps(lingua_metric(step, _loss(step), 1.5 + 40 / step, 3e-4, 4.7e5, 0.1232, 630.0)) + "\n")
    return folder


def write_lingua_stdout(folder: Path, entries: int) -> Path:
    """A Lingua job's stdout (slurm-<job>.out): `entries` step lines as train.py formats them."""
    from tests.import_fixtures import lingua_stdout

    folder.mkdir(parents=True, exist_ok=True)
    steps = [(10 * i, _loss(10 * i), 1.5 + 4 / i, 3e-4, 4.7e5, 0.1232, 630.0) for i in range(1, entries + 1)]
    return lingua_stdout(folder / "slurm-1234.out", steps)


# --------------------------------------------------------------------------- TensorBoard
def _tb_tag(key: str) -> str:
    """transformers' `rewrite_logs` (integration_utils.py; importing it loads all of transformers): eval_x -> eval/x,
    test_x -> test/x, anything else -> train/<key>."""
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1 :]}"
    return f"train/{key}"


def write_tensorboard(folder: Path, entries: int) -> Path:
    """An HF Trainer's TensorBoard folder (`runs/<time>_<host>/`): what TensorBoardCallback writes with torch's
    SummaryWriter: the `args` text (max_steps), then per `on_log` entry one scalar per logged value."""
    from torch.utils.tensorboard import SummaryWriter

    history = hf_log_history(entries)[:-1]  # the summary entry: its scalars exist, but end no series of ours
    log_dir = folder / "runs" / "Dec01_00-00-00_host"
    writer = SummaryWriter(log_dir=str(log_dir), max_queue=1000, flush_secs=3600)
    writer.add_text("args", json.dumps({"max_steps": max(e["step"] for e in history), "logging_steps": 10}))
    for entry in history:
        step = entry["step"]
        for key, value in entry.items():
            if key != "step":
                writer.add_scalar(_tb_tag(key), value, step)
    writer.close()
    return log_dir


# --------------------------------------------------------------------------- W&B offline
WANDB_SCRIPT = textwrap.dedent(
    """
    import math, sys, wandb
    entries = int(sys.argv[1])
    run = wandb.init(project="labnote-bench", mode="offline", config={"trainer": {"max_steps": entries}})
    for n in range(1, entries + 1):
        if n % 10 == 0:
            wandb.log({"eval/loss": 3.5 * math.exp(-n / 2500), "train/global_step": n}, step=n)
        else:
            wandb.log({"train/loss": 4.0 * math.exp(-n / 2000), "train/learning_rate": 1e-3,
                       "train/global_step": n}, step=n)
    run.finish()
    """
)


def write_wandb(folder: Path, entries: int) -> Path:
    """`wandb.init(mode="offline")` + `entries` `wandb.log` calls in a subprocess; returns its WANDB_DIR."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(folder),
        "WANDB_CONFIG_DIR": str(folder / ".config"),
        "WANDB_CACHE_DIR": str(folder / ".cache"),
        "WANDB_DATA_DIR": str(folder / ".data"),
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_API_KEY": "",
    }
    subprocess.run([sys.executable, "-c", WANDB_SCRIPT, str(entries)], env=env, check=True, capture_output=True)
    return folder


# --------------------------------------------------------------------------- lm-evaluation-harness
def lm_eval_sample(doc_id: int) -> dict:
    """One line of samples_<task>_<time>.jsonl (`EvaluationTracker.save_results_samples`, a 4-way choice task)."""
    choices = [f"choice {c} of item {doc_id}" for c in range(4)]
    context = f"Item {doc_id}: which ending follows?"
    logliks = [-10.0 - ((doc_id * 7 + c) % 11) for c in range(4)]
    hashes = {k: f"{(doc_id * 2654435761 + i) % (1 << 64):064x}" for i, k in enumerate(("doc", "prompt", "target"))}
    return {
        "doc_id": doc_id,
        "doc": {"choices": choices, "context": context, "id": f"item-{doc_id:06d}", "label": doc_id % 4},
        "target": str(doc_id % 4),
        "arguments": {f"gen_args_{c}": {"arg_0": context, "arg_1": " " + choices[c]} for c in range(4)},
        "resps": [[[str(v), "False"]] for v in logliks],
        "filtered_resps": [[str(v), "False"] for v in logliks],
        "filter": "none",
        "metrics": ["acc", "acc_norm"],
        "doc_hash": hashes["doc"],
        "prompt_hash": hashes["prompt"],
        "target_hash": hashes["target"],
        "acc": float(max(range(4), key=lambda c: logliks[c]) == doc_id % 4),
        "acc_norm": float(max(range(4), key=lambda c: logliks[c]) == doc_id % 4),
    }


def write_lm_eval(folder: Path, entries: int) -> Path:
    """An lm-eval --output_path: results_<time>.json and samples_piqa_<time>.jsonl with `entries` items."""
    from tests.import_fixtures import lm_eval_result

    stamp = "2025-10-14T01-29-03.123456"
    model = folder / "outputs__debug_3"
    model.mkdir(parents=True, exist_ok=True)
    result = lm_eval_result()
    result["n-samples"]["piqa"] = {"original": entries, "effective": entries}
    (model / f"results_{stamp}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    with open(model / f"samples_piqa_{stamp}.jsonl", "w", encoding="utf-8") as fh:
        for i in range(entries):
            fh.write(json.dumps(lm_eval_sample(i)) + "\n")
    return folder


WRITERS = {  # source name -> (FROM=, writer), in the order the benchmark prints them
    "hf-trainer": ("hf-trainer", write_hf_trainer),
    "lightning": ("lightning", write_lightning),
    "lingua": ("lingua", write_lingua),
    "lingua-stdout": ("lingua", write_lingua_stdout),
    "tensorboard": ("tensorboard", write_tensorboard),
    "wandb": ("wandb", write_wandb),
    "lm-eval": ("lm-eval", write_lm_eval),
}
