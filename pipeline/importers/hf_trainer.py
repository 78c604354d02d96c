"""Hugging Face `Trainer` runs: `trainer_state.json` (its `log_history`), plus `config.json` when present.

    <output_dir>/trainer_state.json              written at the end of `train()` (and in every checkpoint)
    <output_dir>/checkpoint-<step>/trainer_state.json  the newest is used when the run never finished
    <output_dir>/config.json                     the model's config (hidden_size, num_hidden_layers, …)

`log_history` holds three kinds of entries: training logs (`loss`, `grad_norm`, `learning_rate`, `epoch`,
`step`, optionally `num_input_tokens_seen`), evaluations (`eval_loss`, `eval_<metric>`, `eval_runtime`, …)
and one end-of-training summary (`train_runtime`, `train_samples_per_second`, `total_flos`, `train_loss`).
The Trainer does not log tokens per second per step, so those columns stay empty.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.importers.common import (
    Imported,
    SourceError,
    array_lines,
    assign_segments,
    number,
    read_json,
    required_step,
)

SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_tokens_per_second",
    "total_flos",
    "train_loss",
)


def _state_file(src: Path) -> Path:
    if src.is_file():
        return src
    if (src / "trainer_state.json").is_file():
        return src / "trainer_state.json"
    checkpoints = sorted(
        (p for p in src.glob("checkpoint-*/trainer_state.json") if re.fullmatch(r"checkpoint-\d+", p.parent.name)),
        key=lambda p: int(p.parent.name.split("-")[1]),
    )
    if not checkpoints:
        raise SourceError(
            f"{src}: no trainer_state.json (nor checkpoint-*/trainer_state.json); expected a Trainer output_dir"
        )
    return checkpoints[-1]


def _train_row(entry: dict, where: str) -> dict:
    return {
        "step": required_step(entry, "step", where),
        "epoch": number(entry.get("epoch"), f"{where}: epoch"),
        "loss": number(entry.get("loss"), f"{where}: loss"),
        "grad_norm": number(entry.get("grad_norm"), f"{where}: grad_norm"),
        "lr": number(entry.get("learning_rate"), f"{where}: learning_rate"),
        "tokens": number(entry.get("num_input_tokens_seen"), f"{where}: num_input_tokens_seen"),
    }


def _eval_row(entry: dict, where: str) -> dict:
    return {
        "step": required_step(entry, "step", where),
        "epoch": number(entry.get("epoch"), f"{where}: epoch"),
        "val_loss": number(entry.get("eval_loss"), f"{where}: eval_loss"),
        "val_perplexity": number(entry.get("eval_perplexity"), f"{where}: eval_perplexity"),
        "val_accuracy": number(entry.get("eval_accuracy"), f"{where}: eval_accuracy"),
    }


def read_state(path: Path, imp: Imported) -> None:
    state = read_json(path)
    history = state.get("log_history")
    if not isinstance(history, list):
        raise SourceError(f"{path}: no 'log_history' list (expected the Trainer's trainer_state.json)")
    train, evals = [], []
    lines = array_lines(path.read_text(encoding="utf-8"), "log_history")
    for i, entry in enumerate(history):
        where = f"{path}:{lines[i]}: log_history[{i}]" if i < len(lines) else f"{path}: log_history[{i}]"
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected an object, got {type(entry).__name__}")
        if "loss" in entry:
            train.append(_train_row(entry, where))
        elif "eval_loss" in entry:
            evals.append(_eval_row(entry, where))
        elif "train_runtime" in entry:
            imp.summary = {k: entry[k] for k in SUMMARY_KEYS if k in entry}
    if not train and not evals:
        raise SourceError(f"{path}: log_history has no training or evaluation entries")
    imp.metrics, imp.validation = assign_segments(train), evals
    imp.steps_planned = state.get("max_steps") or None
    imp.train = {"batch_size": state.get("train_batch_size"), "log_every": state.get("logging_steps")}
    imp.source_config = {k: v for k, v in state.items() if k != "log_history"}
    imp.files.append(path)
    if path.parent.name.startswith("checkpoint-"):
        imp.warnings.append(
            f"read {path.parent.name}/trainer_state.json: the output_dir has no final "
            f"trainer_state.json (training did not finish?)"
        )


def read_model_config(path: Path, imp: Imported) -> None:
    cfg = read_json(path)
    imp.files.append(path)
    imp.source_config["model_config"] = cfg
    imp.model = {
        "dim": cfg.get("hidden_size") or cfg.get("n_embd"),
        "layers": cfg.get("num_hidden_layers") or cfg.get("n_layer"),
        "heads": cfg.get("num_attention_heads") or cfg.get("n_head"),
        "vocab_size": cfg.get("vocab_size"),
        "max_seq_len": cfg.get("max_position_embeddings") or cfg.get("n_positions"),
    }


def read(src: Path) -> Imported:
    imp = Imported(format="hf-trainer", source=src)
    state = _state_file(src)
    read_state(state, imp)
    for folder in dict.fromkeys([src if src.is_dir() else src.parent, state.parent]):
        if (folder / "config.json").is_file():
            read_model_config(folder / "config.json", imp)
            break
    return imp
