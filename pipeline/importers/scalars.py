"""Logged scalars by name -> our keys, for loggers that store `name -> value at step` (TensorBoard, W&B).

The names are what the trainer logged: the HF Trainer's `train/loss`, `train/learning_rate`, `eval/loss`,
`eval/<dataset>_loss`; Lightning's own `self.log` names (as in its CSVLogger, pipeline/importers/lightning.py).
Validation names become validation rows (one per eval dataset); every other number is kept under its own name
in train/extra.jsonl, so nothing the logger recorded is dropped.
"""

from __future__ import annotations

from pipeline.importers.common import extra_row
from pipeline.importers.lightning import CANDIDATES

TRAIN = {
    "loss": ["train/loss", *CANDIDATES["loss"]],
    "grad_norm": ["train/grad_norm", *CANDIDATES["grad_norm"]],
    "lr": ["train/learning_rate", *CANDIDATES["lr"]],
    "tokens": ["train/num_input_tokens_seen", "train/num_tokens", *CANDIDATES["tokens"]],
    "tokens_per_s": CANDIDATES["tokens_per_s"],
    "step_time_s": CANDIDATES["step_time_s"],
    "epoch": ["train/epoch", "epoch"],
}
VAL = {
    "val_loss": ["eval/loss", *CANDIDATES["val_loss"]],
    "val_perplexity": ["eval/perplexity", *CANDIDATES["val_perplexity"]],
    "val_accuracy": ["eval/accuracy", *CANDIDATES["val_accuracy"]],
}
VAL_SUFFIX = {"loss": "val_loss", "accuracy": "val_accuracy", "perplexity": "val_perplexity"}
STEP_NAMES = ("train/global_step", "trainer/global_step", "global_step", "_step", "_runtime", "_timestamp")


def choose(names: set[str], mapping: dict[str, str]) -> dict[str, str]:
    """Our key -> the logged name used for it (MAP= first, then the first known name present; `lr-<Opt>`)."""
    chosen = {}
    for ours, candidates in {**TRAIN, **VAL}.items():
        if ours in mapping:
            chosen[ours] = mapping[ours]
            continue
        found = [n for n in candidates if n in names] or (
            sorted(n for n in names if n.startswith("lr-")) if ours == "lr" else []
        )
        if found:
            chosen[ours] = found[0]
    return chosen


def eval_datasets(names: set[str]) -> dict[str, tuple[str, str]]:
    """`eval/<dataset>_<metric>` names (HF with several eval sets) -> (dataset, our key)."""
    out = {}
    for name in names:
        if name.startswith("eval/"):
            rest = name[len("eval/") :]
            for suffix, ours in VAL_SUFFIX.items():
                if rest.endswith("_" + suffix):
                    out[name] = (rest[: -len(suffix) - 1], ours)
    return out


def split(by_step: dict[int, dict[str, float]], mapping: dict[str, str], source: str):
    """Rows per step -> (metrics rows, validation rows, extra rows), in step order."""
    names = {n for values in by_step.values() for n in values}
    chosen = choose(names, mapping)
    per_set = eval_datasets(names - set(chosen.values()))
    used = set(chosen.values()) | set(per_set) | set(STEP_NAMES)
    metrics, validation, extra = [], [], []
    for step in sorted(by_step):
        values = by_step[step]
        train = {k: values.get(chosen[k]) for k in TRAIN if k in chosen}
        if train.get("loss") is not None:
            metrics.append({"step": step, **train})
        val = {k: values.get(chosen[k]) for k in VAL if k in chosen and values.get(chosen[k]) is not None}
        if val:
            validation.append({"step": step, "epoch": train.get("epoch"), **val})
        sets: dict[str, dict] = {}
        for name, (dataset, ours) in per_set.items():
            if name in values:
                sets.setdefault(dataset, {})[ours] = values[name]
        validation += [{"step": step, "dataset": d, **v} for d, v in sorted(sets.items())]
        if row := extra_row(step, source, {k: v for k, v in values.items() if k not in used}):
            extra.append(row)
    return metrics, validation, extra
