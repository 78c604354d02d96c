"""Runs made by the tools themselves, for the importer tests: a tiny `transformers.Trainer`, a tiny
`pytorch_lightning.Trainer`, `wandb` in offline mode and `lm_eval.simple_evaluate` write their own files on CPU
in a few seconds each, in temporary directories, offline. Nothing here writes a tool's format by hand: the tests
compare what the import shows with what the tool itself wrote (its trainer_state.json, metrics.csv, event files,
.wandb log, results and samples files).

Models are built from a config (2 layers, a few dozen dimensions) with random weights: no pretrained weights
exist here, and none are needed to produce the files. Each function also works outside pytest
(`python tests/real_tool_fixtures.py <dir>` writes them all), so a fixture's output can be looked at by hand.

The fixtures are session-scoped (`hf_runs`, `lightning_runs`, `wandb_run`, `lm_eval_run`): each tool runs once
per test session, however many tests read its output. Tests must not modify these folders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update({k: v for k, v in OFFLINE.items() if k not in os.environ})

VOCAB = 64
SEQ = 16


# --------------------------------------------------------------------------- Hugging Face Trainer
def _token_dataset(n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)

    class Tokens(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return {"input_ids": ids[i], "labels": ids[i]}

    return Tokens()


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None
    )
    return GPT2LMHeadModel(cfg)


def hf_trainer_run(
    out: Path,
    max_steps: int = 23,
    logging_steps: int = 5,
    eval_steps: int = 10,
    save_steps: int = 10,
    two_eval_sets: bool = True,
    save_state: bool = True,
    seed: int = 0,
) -> Path:
    """`Trainer.train()` as run_clm.py runs it: TensorBoard logging, evaluation and checkpoints every few steps,
    then `save_model()` + `save_state()` (what writes output_dir/trainer_state.json)."""
    import torch
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(seed)
    evals = (
        {"a": _token_dataset(8, seed + 1), "b": _token_dataset(8, seed + 2)}
        if two_eval_sets
        else _token_dataset(8, seed + 1)
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        logging_steps=logging_steps,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_only_model=True,
        report_to=["tensorboard"],
        use_cpu=True,
        seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=_tiny_gpt2(), args=args, train_dataset=_token_dataset(64, seed), eval_dataset=evals)
    trainer.train()
    if save_state:
        trainer.save_model()
        trainer.save_state()
    return out


def hf_runs(root: Path) -> dict[str, Path]:
    """`finished`: max_steps 23, logging every 5 (the last training log is step 20), eval sets a and b every 10,
    checkpoints 10, 20, 23. `two_runs`: one output_dir whose checkpoints come from two runs (max_steps 8, saved
    every 4; then max_steps 15, saved every 5), never finished by save_state."""
    finished = hf_trainer_run(root / "hf_finished")
    two = root / "hf_two_runs"
    hf_trainer_run(two, max_steps=8, save_steps=4, eval_steps=4, logging_steps=2, two_eval_sets=False, save_state=False)
    hf_trainer_run(
        two, max_steps=15, save_steps=5, eval_steps=5, logging_steps=5, two_eval_sets=False, save_state=False
    )
    return {"finished": finished, "two_runs": two}


# --------------------------------------------------------------------------- PyTorch Lightning
def _lightning_module(hparams: dict):
    import pytorch_lightning as pl
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self, hp: dict):
            super().__init__()
            self.save_hyperparameters(hp)
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

        def on_train_epoch_end(self):  # a histogram, as people log weights: TensorBoard only (not a series)
            for logger in self.loggers:
                if hasattr(logger.experiment, "add_histogram"):
                    logger.experiment.add_histogram("weights/layer0", self.net[0].weight, self.global_step)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return Tiny(hparams)


def _loaders(seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 8, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(40, 1, generator=g)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:8], y[:8]), batch_size=4)
    return train, val


def lightning_fit(root: Path, hparams: dict, max_steps: int, ckpt_path: Path | None = None, save: Path | None = None):
    """One `Trainer.fit` with CSVLogger (root/lightning_logs/version_<n>/) and TensorBoardLogger
    (root/tb/lightning_logs/version_<n>/), LearningRateMonitor, logging every 5 steps, validating every epoch
    (10 steps), a weight histogram at each epoch's end (TensorBoard)."""
    import logging

    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_steps=max_steps,
        logger=[CSVLogger(root), TensorBoardLogger(root / "tb")],
        callbacks=[LearningRateMonitor(logging_interval="step")],
        log_every_n_steps=5,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    train, val = _loaders(0)
    trainer.fit(_lightning_module(hparams), train, val, ckpt_path=str(ckpt_path) if ckpt_path else None)
    if save:
        trainer.save_checkpoint(save)
    return trainer


LIGHTNING_A = {"cfg": {"trainer": {"max_steps": 30}}, "lr": 0.01}
LIGHTNING_B = {"cfg": {"trainer": {"max_steps": 30}}, "lr": 0.02}


def lightning_runs(root: Path) -> dict[str, Path]:
    """version_0: hparams A, all 30 steps. version_1: hparams B, stopped after 15 of its 30 steps (a checkpoint
    saved); version_2: the same run resumed from it (`ckpt_path=`) to step 30. `root` is the default_root_dir."""
    lightning_fit(root, LIGHTNING_A, 30)
    ckpt = root / "stopped.ckpt"
    lightning_fit(root, LIGHTNING_B, 15, save=ckpt)
    lightning_fit(root, LIGHTNING_B, 30, ckpt_path=ckpt)
    return {"root": root, "logs": root / "lightning_logs", "tb": root / "tb" / "lightning_logs"}


# --------------------------------------------------------------------------- W&B offline
WANDB_STEPS = 30
WANDB_SCRIPT = textwrap.dedent(
    """
    import math, sys, wandb
    steps = int(sys.argv[1])
    run = wandb.init(project="labnote-test", mode="offline",
                     config={"trainer": {"max_steps": steps}, "optimizer": {"lr": 0.001}, "seed": 3})
    for step in range(1, steps + 1):
        lr = 0.001 * min(1.0, step / 5)
        wandb.log({"train/loss": 4.0 * math.exp(-step / 20), "train/learning_rate": lr,
                   "custom/tokens_per_batch": 512 + step, "train/global_step": step}, step=step)
        if step % 10 == 0:
            wandb.log({"eval/loss": 3.5 * math.exp(-step / 25), "train/global_step": step,
                       "weights": wandb.Histogram([0.1 * i for i in range(20)]),
                       "status_text": "ok"}, step=step)
    run.summary["best_eval_loss"] = 2.1
    run.summary["final_note"] = "done"
    run.finish()
    print(run.dir)
    """
)


def wandb_run(root: Path) -> Path:
    """`wandb.init(mode="offline")` in a subprocess with its own WANDB_DIR (it never opens a connection):
    30 steps of train/loss and train/learning_rate, a custom series, eval/loss, a histogram and a text value
    every 10 steps, a config with nested trainer.max_steps, and a summary. Returns WANDB_DIR."""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **OFFLINE,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(root),
        "WANDB_CONFIG_DIR": str(root / ".config"),
        "WANDB_CACHE_DIR": str(root / ".cache"),
        "WANDB_DATA_DIR": str(root / ".data"),
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_API_KEY": "",
    }
    env.pop("WANDB_API_KEY")
    proc = subprocess.run(
        [sys.executable, "-c", WANDB_SCRIPT, str(WANDB_STEPS)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"wandb offline run failed:\n{proc.stderr[-3000:]}")
    return root


# --------------------------------------------------------------------------- lm-evaluation-harness
def tiny_hf_model(out: Path) -> Path:
    """A random 2-layer Llama with labnote's byte tokenizer, saved as a model directory lm-eval's `hf` loads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipeline.config.schema import ByteTokenizer
    from pipeline.data.tokenizer import build_tokenizer

    tok = build_tokenizer(ByteTokenizer(type="bytes"), [])
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


LM_EVAL_LIMIT = 6


def lm_eval_run(root: Path) -> Path:
    """`lm_eval --model hf --tasks labnote_local --limit 6 --log_samples --output_path <root>/results`, through
    the Python API: `simple_evaluate` on the group labnote_local (labnote's offline tasks), then lm-eval's own
    `EvaluationTracker` writes results_<time>.json and samples_<task>_<time>.jsonl as the CLI does
    (lm_eval/_cli/run.py: the tracker is passed to simple_evaluate, then save_results_aggregated/_samples)."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    model = tiny_hf_model(root / "tiny-llama")
    tracker = EvaluationTracker(output_path=str(root / "results"))
    manager = TaskManager(include_path=[str(REPO / "pipeline" / "tasks")], include_defaults=False)
    result = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model},dtype=float32,max_length=256",
        tasks=["labnote_local"],
        task_manager=manager,
        limit=LM_EVAL_LIMIT,
        batch_size=8,
        device="cpu",
        log_samples=True,
        bootstrap_iters=0,
        gen_kwargs={"max_gen_toks": 4},
        evaluation_tracker=tracker,
    )
    samples = result.pop("samples")
    tracker.save_results_aggregated(results=result, samples=samples)
    for task in result["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return root / "results"


# --------------------------------------------------------------------------- pytest fixtures
@pytest.fixture(scope="session")
def hf_runs_dir(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    pytest.importorskip("tensorboard")
    return hf_runs(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="session")
def lightning_runs_dir(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("pytorch_lightning")
    pytest.importorskip("tensorboard")
    return lightning_runs(tmp_path_factory.mktemp("pl"))


@pytest.fixture(scope="session")
def wandb_dir(tmp_path_factory) -> Path:
    pytest.importorskip("wandb")
    return wandb_run(tmp_path_factory.mktemp("wandb"))


@pytest.fixture(scope="session")
def lm_eval_dir(tmp_path_factory) -> Path:
    pytest.importorskip("lm_eval")
    return lm_eval_run(tmp_path_factory.mktemp("lm_eval"))


def _tree(root: Path) -> str:
    return "\n".join(str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file())


if __name__ == "__main__":  # python tests/real_tool_fixtures.py /tmp/fixtures [hf|lightning|wandb|lm-eval]
    import time

    sys.path.insert(0, str(REPO))
    out = Path(sys.argv[1])
    wanted = sys.argv[2:] or ["hf", "lightning", "wandb", "lm-eval"]
    makers = {"hf": hf_runs, "lightning": lightning_runs, "wandb": wandb_run, "lm-eval": lm_eval_run}
    for name in wanted:
        t0 = time.perf_counter()
        makers[name](out / name)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(json.dumps(_tree(out).splitlines(), indent=0))
