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

from pathlib import Path

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, SourceError, array_lines, number, read_json, required_step

SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_tokens_per_second",
    "total_flos",
    "train_loss",
)


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


def state_records(path: Path, imp: Imported) -> list[tuple[str, dict]]:
    """The `log_history` entries, each with the line its object starts on; the rest of the state into `imp`."""
    state = read_json(path)
    history = state.get("log_history")
    if not isinstance(history, list):
        raise SourceError(f"{path}: no 'log_history' list (expected the Trainer's trainer_state.json)")
    lines = array_lines(path.read_text(encoding="utf-8"), "log_history")
    imp.steps_planned = state.get("max_steps") or None
    imp.train = {"batch_size": state.get("train_batch_size"), "log_every": state.get("logging_steps")}
    imp.source_config = {k: v for k, v in state.items() if k != "log_history"}
    return [
        (f"{path}:{lines[i]}: log_history[{i}]" if i < len(lines) else f"{path}: log_history[{i}]", entry)
        for i, entry in enumerate(history)
    ]


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


class HFTrainer(Adapter):
    name = "hf-trainer"
    description = "Hugging Face Trainer: an output_dir (its newest checkpoint-*/ if unfinished) or a trainer_state.json"
    find = Find("trainer_state.json", numbered="checkpoint-")
    requires = ("metrics", "validation")

    def records(self, path: Path, imp: Imported) -> list[tuple[str, dict]]:
        return state_records(path, imp)

    def rows(self, record, where: str, imp: Imported) -> Rows:
        if not isinstance(record, dict):
            raise SourceError(f"{where}: expected an object, got {type(record).__name__}")
        if "loss" in record:
            return Rows(metrics=_train_row(record, where))
        if "eval_loss" in record:
            return Rows(validation=_eval_row(record, where))
        if "train_runtime" in record:  # the end-of-training summary: shown verbatim, not a row
            imp.summary = {k: record[k] for k in SUMMARY_KEYS if k in record}
        return Rows()

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        state = files[0]
        if state.parent.name.startswith("checkpoint-"):
            imp.warnings.append(
                f"read {state.parent.name}/trainer_state.json: the output_dir has no final "
                f"trainer_state.json (training did not finish?)"
            )
        for folder in dict.fromkeys([src if src.is_dir() else src.parent, state.parent]):
            if (folder / "config.json").is_file():
                read_model_config(folder / "config.json", imp)
                break
