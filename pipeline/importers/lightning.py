"""PyTorch Lightning runs logged with `CSVLogger`: `metrics.csv` (+ `hparams.yaml`).

    lightning_logs/version_<n>/metrics.csv    one row per `log_metrics` call: epoch, step, and the logged
                                              names as columns (a row fills only the columns it logged)
    lightning_logs/version_<n>/hparams.yaml   what `save_hyperparameters()` stored

Give a version directory for one run; give `lightning_logs/` to join its versions in order (a run
resumed with a new logger version), which the report then shows as segments.

Column names are the user's own `self.log(...)` names, so the adapter looks for the common ones (below)
and `MAP="loss=my_loss val_loss=valid/nll"` names any other.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from pipeline.importers.common import Imported, SourceError, assign_segments, number, read_yaml, required_step

CANDIDATES = {
    "loss": ["train_loss_step", "train_loss", "train/loss", "loss", "training_loss"],
    "grad_norm": ["grad_norm", "grad_2.0_norm_total", "train/grad_norm"],
    "lr": ["lr", "learning_rate", "train/lr"],  # plus LearningRateMonitor's "lr-<Optimizer>"
    "tokens": ["tokens", "train/tokens"],
    "tokens_per_s": ["tokens_per_s", "tokens_per_sec", "train/tokens_per_sec"],
    "step_time_s": ["step_time_s", "train/step_time_s"],
    "val_loss": ["val_loss", "val/loss", "val_loss_epoch", "validation_loss"],
    "val_perplexity": ["val_perplexity", "val_ppl", "val/ppl"],
    "val_accuracy": ["val_accuracy", "val_acc", "val/acc"],
}
VALIDATION = ("val_loss", "val_perplexity", "val_accuracy")


def _columns(header: list[str], mapping: dict[str, str], path: Path) -> dict[str, str]:
    chosen = {}
    for ours, names in CANDIDATES.items():
        if ours in mapping:
            if mapping[ours] not in header:
                raise SourceError(f"{path}:1: MAP {ours}={mapping[ours]}: no such column; columns: {', '.join(header)}")
            chosen[ours] = mapping[ours]
            continue
        found = [n for n in names if n in header] or (
            [c for c in header if c.startswith("lr-")] if ours == "lr" else []
        )
        if found:
            chosen[ours] = found[0]
    if "loss" not in chosen:
        raise SourceError(
            f"{path}:1: no loss column (looked for {', '.join(CANDIDATES['loss'])}); columns: "
            f'{", ".join(header)}; name yours with MAP="loss=<column>"'
        )
    return chosen


def read_csv(path: Path, imp: Imported, mapping: dict[str, str]) -> tuple[list[dict], list[dict]]:
    train, val = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or "step" not in header:
            raise SourceError(f"{path}:1: expected a CSVLogger header with a 'step' column, got {header}")
        cols = _columns(header, mapping, path)
        for values in reader:
            where = f"{path}:{reader.line_num}"
            if len(values) != len(header):
                raise SourceError(f"{where}: {len(values)} fields, the header has {len(header)}")
            record = dict(zip(header, values))
            row = {ours: number(record[col] or None, f"{where}: {col}") for ours, col in cols.items()}
            step = required_step(record, "step", where)
            epoch = number(record.get("epoch") or None, f"{where}: epoch")
            if row.get("loss") is not None:
                train.append({"step": step, "epoch": epoch, **{k: v for k, v in row.items() if k not in VALIDATION}})
            if any(row.get(k) is not None for k in VALIDATION):
                val.append({"step": step, "epoch": epoch, **{k: row.get(k) for k in VALIDATION}})
    imp.files.append(path)
    return train, val


def _csv_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    if (src / "metrics.csv").is_file():
        return [src / "metrics.csv"]
    versions = sorted(
        (p for p in src.glob("version_*/metrics.csv") if re.fullmatch(r"version_\d+", p.parent.name)),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    if not versions:
        raise SourceError(f"{src}: no metrics.csv (nor version_*/metrics.csv); expected a CSVLogger directory")
    return versions


def read(src: Path, mapping: dict[str, str] | None = None) -> Imported:
    imp = Imported(format="lightning", source=src)
    for path in _csv_files(src):
        train, val = read_csv(path, imp, mapping or {})
        imp.metrics += train
        imp.validation += val
        hparams = path.parent / "hparams.yaml"
        if hparams.is_file():
            imp.source_config = read_yaml(hparams)
            imp.files.append(hparams)
    if not imp.metrics:
        raise SourceError(f"{imp.files[0]}: no row has a value in the training-loss column")
    assign_segments(imp.metrics)
    hp = imp.source_config
    max_steps = hp.get("max_steps")
    imp.steps_planned = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
    imp.train = {
        "lr": hp.get("lr") or hp.get("learning_rate"),
        "batch_size": hp.get("batch_size"),
        "seed": hp.get("seed"),
    }
    return imp
