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
from collections.abc import Iterator
from pathlib import Path

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, SourceError, number, read_yaml, required_step

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


class Lightning(Adapter):
    name = "lightning"
    description = "PyTorch Lightning CSVLogger: a version dir, a metrics.csv, or lightning_logs/ (versions joined)"
    find = Find("metrics.csv", numbered="version_", every=True)
    takes_mapping = True

    def records(self, path: Path, imp: Imported) -> Iterator[tuple[str, dict]]:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or "step" not in header:
                raise SourceError(f"{path}:1: expected a CSVLogger header with a 'step' column, got {header}")
            self.columns = _columns(header, self.mapping, path)  # this file's: versions may log other names
            for values in reader:
                where = f"{path}:{reader.line_num}"
                if len(values) != len(header):
                    raise SourceError(f"{where}: {len(values)} fields, the header has {len(header)}")
                yield where, dict(zip(header, values))

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        row = {ours: number(record[col] or None, f"{where}: {col}") for ours, col in self.columns.items()}
        step = required_step(record, "step", where)
        epoch = number(record.get("epoch") or None, f"{where}: epoch")
        out = Rows()
        if row.get("loss") is not None:
            out.metrics = {"step": step, "epoch": epoch, **{k: v for k, v in row.items() if k not in VALIDATION}}
        if any(row.get(k) is not None for k in VALIDATION):
            out.validation = {"step": step, "epoch": epoch, **{k: row.get(k) for k in VALIDATION}}
        return out

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        for path in files:
            hparams = path.parent / "hparams.yaml"
            if hparams.is_file():
                imp.source_config = read_yaml(hparams)  # the newest version's
                imp.files.append(hparams)
        hp = imp.source_config
        max_steps = hp.get("max_steps")
        imp.steps_planned = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
        imp.train = {
            "lr": hp.get("lr") or hp.get("learning_rate"),
            "batch_size": hp.get("batch_size"),
            "seed": hp.get("seed"),
        }
