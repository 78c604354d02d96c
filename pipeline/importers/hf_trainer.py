"""Hugging Face `Trainer` runs: `trainer_state.json` (its `log_history` and its own counters), plus
`config.json` and `eval_results.json` when present.

    <output_dir>/trainer_state.json              written at the end of `train()` (and in every checkpoint)
    <output_dir>/checkpoint-<step>/trainer_state.json  the newest is used when the run never finished
    <output_dir>/config.json                     the model's config (hidden_size, num_hidden_layers, …)
    <output_dir>/eval_results.json               the final `evaluate()` (used when log_history has no eval entry)

Steps done, planned steps and status come from the state itself (`global_step`, `max_steps`, an
`EarlyStoppingCallback` in `stateful_callbacks`), never from the last logged row: a run whose max_steps is not a
multiple of logging_steps is finished although its last training log is earlier.

`log_history` entries, and where each key goes (nothing numeric is dropped):

    training logs   loss, grad_norm, learning_rate (or a custom `lr`), epoch, num_input_tokens_seen (or TRL's
                    `num_tokens`) -> train/metrics.jsonl; any other number (mean_token_accuracy, entropy, …)
                    -> train/extra.jsonl
    evaluations     eval_loss / eval_accuracy / eval_perplexity -> train/validation.jsonl; with several eval
                    datasets (`eval_<name>_loss`) one row per dataset (`dataset: <name>`); other eval_* numbers
                    (rouge, runtime, gen_len, …) -> train/extra.jsonl
    predict_*/test_* entries (no step)      -> train/extra.jsonl (step null)
    the end-of-training summary (train_runtime, train_loss, …) -> train/DONE `summary`
    any other entry with numbers            -> train/extra.jsonl (source "log")
    values that are not numbers (a text, a list: e.g. a logged confusion matrix) -> counted, by name, in
                    import.json `not_carried` (check `metrics_not_imported`)

An output_dir whose checkpoint-* folders disagree on max_steps / batch size holds several runs: they are
listed (check `several_runs_in_source`) and the final state (else the newest checkpoint) is read, or the
checkpoint named by `VERSION=`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import (
    Imported,
    SourceError,
    array_lines,
    extra_row,
    is_number,
    number,
    read_json,
    required_step,
)

TRAIN_KEYS = {
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "lr",
    "num_input_tokens_seen": "tokens",
    "epoch": "epoch",
}
FALLBACK = {"lr": "lr", "num_tokens": "tokens"}  # a custom `lr`, TRL's `num_tokens`: when the usual key is absent
EVAL_KEYS = {"loss": "val_loss", "accuracy": "val_accuracy", "perplexity": "val_perplexity"}
RUN_KEYS = ("max_steps", "train_batch_size", "num_train_epochs")  # what tells two runs' checkpoints apart
CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _train_row(entry: dict, where: str, imp: Imported) -> tuple[dict, dict]:
    row, rest = {"step": required_step(entry, "step", where)}, {}
    for key, value in entry.items():
        if key == "step":
            continue
        ours = TRAIN_KEYS.get(key)
        if ours is None and key in FALLBACK:
            usual = next(k for k, v in TRAIN_KEYS.items() if v == FALLBACK[key])
            ours = FALLBACK[key] if usual not in entry else None
        if ours:
            row[ours] = number(value, where, key)
        else:
            rest[key] = value
    return row, imp.numbers(rest)


def _eval_rows(entry: dict, prefix: str, where: str, imp: Imported) -> tuple[list[dict], list[dict]]:
    """Validation rows (one per eval dataset) and extra rows of one eval entry."""
    step = required_step(entry, "step", where) if "step" in entry else None
    keys = [k[len(prefix) :] for k in entry if k.startswith(prefix)]
    datasets = sorted({k[: -len("_loss")] for k in keys if k.endswith("_loss") and k != "loss"}, key=len, reverse=True)
    per: dict[str | None, dict] = {}
    for key in keys:
        value = entry[prefix + key]
        dataset = next((d for d in datasets if key.startswith(d + "_")), None)
        metric = key[len(dataset) + 1 :] if dataset else key
        per.setdefault(dataset, {})[metric] = number(value, f"{where}: {prefix}{key}") if is_number(value) else value
    validation, extra = [], []
    epoch = number(entry.get("epoch"), where, "epoch")
    for dataset, metrics in per.items():
        ours = {EVAL_KEYS[m]: v for m, v in metrics.items() if m in EVAL_KEYS}
        if ours and step is not None and prefix == "eval_":
            row = {"step": step, "epoch": epoch, **ours}
            if dataset:
                row["dataset"] = dataset
            validation.append(row)
            rest = {m: v for m, v in metrics.items() if m not in EVAL_KEYS}
        else:
            rest = metrics
        named = {(f"{dataset}_{m}" if dataset else m): v for m, v in rest.items()}
        imp.numbers({prefix + k: v for k, v in named.items()})  # what is not a number: counted as not carried
        if row := extra_row(step, prefix.rstrip("_"), rest, dataset=dataset):
            extra.append(row)
    return validation, extra


def state_records(path: Path, imp: Imported) -> list[tuple[str, dict]]:
    """The `log_history` entries, each named `<path>: log_history[i]` (`HFTrainer.rows` adds the line on an error);
    the state's counters into `imp`."""
    state = read_json(path)
    history = state.get("log_history")
    if not isinstance(history, list):
        raise SourceError(f"{path}: no 'log_history' list (expected the Trainer's trainer_state.json)")
    imp.steps_planned = state.get("max_steps") or None
    if isinstance(state.get("global_step"), int):
        imp.steps_done = state["global_step"]
    imp.train = {"batch_size": state.get("train_batch_size"), "log_every": state.get("logging_steps")}
    imp.source_config = {k: v for k, v in state.items() if k != "log_history"}
    stopper = (state.get("stateful_callbacks") or {}).get("EarlyStoppingCallback")
    if stopper and imp.steps_planned and (imp.steps_done or 0) < imp.steps_planned:
        args, attrs = stopper.get("args") or {}, stopper.get("attributes") or {}
        patience, counter = args.get("early_stopping_patience"), attrs.get("early_stopping_patience_counter")
        if patience is not None and counter is not None and counter >= patience:
            imp.status = "early_stopped"
            imp.status_why = (
                f"EarlyStoppingCallback: no improvement in {counter} evaluations (patience {patience}) "
                f"at step {imp.steps_done} of {imp.steps_planned}"
            )
    return [(f"{path}: log_history[{i}]", entry) for i, entry in enumerate(history)]


ENTRY = re.compile(r"(.*): log_history\[(\d+)\]")


def located(where: str, lines: dict[str, list[int]]) -> str:
    """`<path>: log_history[i]` -> `<path>:<line>: log_history[i]`: the line the entry's object starts on, from one
    pass over the file (`array_lines`), made only when a message needs it (`lines` keeps it per file)."""
    match = ENTRY.fullmatch(where)
    if not match:
        return where
    path, i = match.group(1), int(match.group(2))
    if path not in lines:
        lines[path] = array_lines(Path(path).read_text(encoding="utf-8"), "log_history")
    return f"{path}:{lines[path][i]}: log_history[{i}]" if i < len(lines[path]) else where


def read_model_config(path: Path, imp: Imported) -> None:
    cfg = read_json(path)
    imp.files.append(path)
    imp.source_config["model_config"] = cfg
    imp.model = {
        "dim": cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model"),
        "layers": cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("encoder_layers"),
        "heads": cfg.get("num_attention_heads") or cfg.get("n_head") or cfg.get("encoder_attention_heads"),
        "vocab_size": cfg.get("vocab_size"),
        "max_seq_len": cfg.get("max_position_embeddings") or cfg.get("n_positions"),
    }


def _run_key(path: Path) -> tuple:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ("unreadable",)
    return tuple(state.get(k) for k in RUN_KEYS)


class HFTrainer(Adapter):
    name = "hf-trainer"
    description = "Hugging Face Trainer: an output_dir (its newest checkpoint-*/ if unfinished) or a trainer_state.json"
    find = Find("trainer_state.json", numbered="checkpoint-")
    requires = ("metrics", "validation")
    takes_version = True

    def locate(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        found = [("output_dir", src / "trainer_state.json")] if (src / "trainer_state.json").is_file() else []
        checkpoints = sorted(
            (p for p in src.glob("checkpoint-*/trainer_state.json") if CHECKPOINT.fullmatch(p.parent.name)),
            key=lambda p: int(CHECKPOINT.fullmatch(p.parent.name).group(1)),
        )
        found += [(p.parent.name, p) for p in checkpoints]
        if not found:
            return super().locate(src)  # the shared "nothing found" error
        chosen = found[0] if found[0][0] == "output_dir" else found[-1]
        if self.version:
            wanted = self.version if self.version.startswith("checkpoint-") else f"checkpoint-{self.version}"
            named = [f for f in found if f[0] == wanted]
            if not named:
                raise SourceError(
                    f"VERSION={self.version}: no {wanted}/ in {src}; there are: {', '.join(n for n, _ in found)}"
                )
            chosen = named[0]
        groups: dict[tuple, list[str]] = {}
        for label, path in found:
            groups.setdefault(_run_key(path), []).append(label)
        self._runs = [
            {
                "name": ", ".join(labels),
                "config": dict(zip(RUN_KEYS, key)),
                "read": chosen[0] in labels,
            }
            for key, labels in groups.items()
        ]
        return [chosen[1]]

    def records(self, path: Path, imp: Imported) -> list[tuple[str, dict]]:
        return state_records(path, imp)

    def rows(self, record, where: str, imp: Imported) -> Rows:
        try:
            return self._rows(record, where, imp)
        except SourceError as exc:
            self._lines = getattr(self, "_lines", {})
            raise SourceError(str(exc).replace(where, located(where, self._lines), 1)) from None

    def _rows(self, record, where: str, imp: Imported) -> Rows:
        if not isinstance(record, dict):
            raise SourceError(f"{where}: expected an object, got {type(record).__name__}")
        if "train_runtime" in record:  # the end-of-training summary: shown verbatim, not a row
            imp.summary = imp.numbers({k: v for k, v in record.items() if k not in ("step", "epoch")})
            return Rows()
        if "loss" in record:
            row, rest = _train_row(record, where, imp)
            if extra := extra_row(row["step"], "train", rest):
                imp.extra.append(extra)
            return Rows(metrics=row)
        for prefix in ("eval_", "predict_", "test_"):
            if any(k.startswith(prefix) for k in record):
                validation, extra = _eval_rows(record, prefix, where, imp)
                imp.extra += extra
                imp.validation += validation[1:]
                return Rows(validation=validation[0] if validation else None)
        step = required_step(record, "step", where) if "step" in record else None
        rest = imp.numbers({k: v for k, v in record.items() if k not in ("step", "epoch")})
        if extra := extra_row(step, "log", rest):
            imp.extra.append(extra)
        return Rows()

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        state = files[0]
        folder = src if src.is_dir() else src.parent
        if state.parent.name.startswith("checkpoint-") and not self.version:
            imp.warnings.append(
                f"read {state.parent.name}/trainer_state.json: the output_dir has no final "
                f"trainer_state.json (training did not finish?)"
            )
        runs = getattr(self, "_runs", [])
        if len(runs) > 1:
            imp.runs = runs
            described = "; ".join(
                f"{r['name']} (" + ", ".join(f"{k} {v}" for k, v in r["config"].items()) + ")" for r in runs
            )
            read = next(r["name"] for r in runs if r["read"])
            imp.warnings.append(
                f"{folder} holds {len(runs)} different runs (their trainer_state.json disagree): {described}; "
                f"read {state.parent.name if state.parent != folder else 'trainer_state.json'} ({read}); "
                f"VERSION=<checkpoint> reads another"
            )
        for where in dict.fromkeys([folder, state.parent]):
            if (where / "config.json").is_file():
                read_model_config(where / "config.json", imp)
                break
        results = state.parent / "eval_results.json"
        if not imp.validation and results.is_file():
            self._final_eval(results, imp)

    def _final_eval(self, path: Path, imp: Imported) -> None:
        """The final `evaluate()` of a run whose log_history has no evaluation: one validation row at the end."""
        result = read_json(path)
        imp.files.append(path)
        step = imp.steps_done if imp.steps_done is not None else max((r["step"] for r in imp.metrics), default=0)
        entry = {"step": step, **{k: v for k, v in result.items() if k != "epoch"}}
        if "perplexity" in entry and "eval_perplexity" not in entry:
            entry["eval_perplexity"] = entry.pop("perplexity")
        validation, extra = _eval_rows({**entry, "epoch": result.get("epoch")}, "eval_", str(path), imp)
        imp.validation += validation
        imp.extra += extra
        if rest := extra_row(
            step, "eval_results", {k: v for k, v in entry.items() if not k.startswith("eval_") and k != "step"}
        ):
            imp.extra.append(rest)
