"""PyTorch Lightning runs logged with `CSVLogger`: `metrics.csv` (+ `hparams.yaml`).

    lightning_logs/version_<n>/metrics.csv    one row per `log_metrics` call: epoch, step, and the logged
                                              names as columns (a row fills only the columns it logged)
    lightning_logs/version_<n>/hparams.yaml   what `save_hyperparameters()` stored (any nesting)

Lightning's `step` column counts from 0 (the first optimizer step is logged as step 0): rows are carried with
step + 1, the number of optimizer steps done, so a finished `max_steps: 500` run ends at 500. Planned steps are
a positive `max_steps` at any depth of hparams.yaml (`cfg.trainer.max_steps`); `max_epochs` alone leaves the
length unknown. Rows of the same step are merged first, so values written on rows of their own
(LearningRateMonitor's `lr-<Optimizer>`, epoch-level metrics) join their step, and `MAP=` can name them.

Columns: the common names below become our keys (`MAP="loss=my_loss val_loss=valid/nll"` names others);
`val_loss/dataloader_idx_<n>` (several val dataloaders) becomes one validation curve per dataloader; every
other numeric column is kept under its own name in train/extra.jsonl. A value of such a column that is not a
number is counted by column in import.json `not_carried` (check `metrics_not_imported`); one in a column of ours
is an error naming its line.

Given `lightning_logs/`, its versions are told apart by hparams and steps: a version with the same hparams
(apart from its length: max_steps, max_epochs, num_epochs) whose steps continue the previous one is a
resume and is joined as a segment; any other version is a different run. Different runs are never stitched:
they are listed (check `several_runs_in_source`) and the newest is read, or the one `VERSION=<n>` names.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import (
    Imported,
    SourceError,
    extra_row,
    number,
    planned_steps,
    read_yaml,
    required_step,
)

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
LENGTH_KEYS = ("max_steps", "max_epochs", "num_epochs", "epochs", "min_steps", "min_epochs", "steps")
DATALOADER = re.compile(r"(.+)/(dataloader_idx_\d+)")
VERSION = re.compile(r"version_(\d+)")


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


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (tree or {}).items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def same_run_config(a: dict, b: dict) -> bool:
    """hparams equal apart from the planned length (a resume may extend max_epochs)."""

    def strip(h):
        return {k: v for k, v in flat(h).items() if k.rsplit(".", 1)[-1] not in LENGTH_KEYS}

    return strip(a) == strip(b)


def first_and_last_step(path: Path) -> tuple[int | None, int | None]:
    """A metrics.csv's first and highest step: read once per file version (grouping and the runs list share it)."""
    stat = path.stat()
    return _first_and_last_step(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _first_and_last_step(path: Path, _mtime_ns: int, _size: int) -> tuple[int | None, int | None]:
    first = last = None
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                step = int(float(row.get("step") or ""))
            except ValueError:
                continue
            first = step if first is None else first
            last = step if last is None else max(last, step)
    return first, last


def continues(hp: dict, prev_hp: dict, first, prev_first, prev_last) -> bool:
    """Whether a version (hparams `hp`, first step `first`) resumes the previous one: same hparams apart from the
    length, and its steps start after the previous version's first and no earlier than half-way through it."""
    return bool(
        hp
        and same_run_config(hp, prev_hp)
        and first is not None
        and prev_last is not None
        and first > prev_first
        and first >= prev_last - (prev_last - prev_first) // 2
    )


def group_versions(versions: list[Path]) -> list[list[Path]]:
    """version_<n> dirs with a metrics.csv, in order of n, grouped into runs (a resume joins its run)."""
    runs: list[list[Path]] = []
    info = {v: (read_hparams(v), *first_and_last_step(v / "metrics.csv")) for v in versions}
    for v in versions:
        hp, first, _last = info[v]
        for run in reversed(runs):
            prev_hp, prev_first, prev_last = info[run[-1]]
            if continues(hp, prev_hp, first, prev_first, prev_last):
                run.append(v)
                break
        else:
            runs.append([v])
    return runs


def read_hparams(version: Path) -> dict:
    path = version / "hparams.yaml"
    return read_yaml(path) if path.is_file() else {}


class Lightning(Adapter):
    name = "lightning"
    description = (
        "PyTorch Lightning CSVLogger: a version dir, a metrics.csv, or lightning_logs/ (one run of its versions)"
    )
    find = Find("metrics.csv", numbered="version_", every=True)
    takes_mapping = True
    takes_version = True

    def locate(self, src: Path) -> list[Path]:
        if src.is_dir() and not any(src.glob("metrics.csv")) and not any(src.glob("version_*")):
            src = src / "lightning_logs" if (src / "lightning_logs").is_dir() else src  # the Trainer's default_root_dir
        files = super().locate(src)
        self._runs, self._no_metrics = [], []
        if len(files) == 1 and not self.version:
            return files
        versions = [p.parent for p in files]
        if src.is_dir():
            self._no_metrics = sorted(
                (p.name for p in src.glob("version_*") if p.is_dir() and not (p / "metrics.csv").is_file()),
                key=lambda n: int(VERSION.fullmatch(n).group(1)) if VERSION.fullmatch(n) else -1,
            )
        runs = group_versions(versions)
        chosen = runs[-1]  # the newest: the run holding the highest version number
        if self.version:
            wanted = self.version if self.version.startswith("version_") else f"version_{self.version}"
            chosen = next((r for r in runs if any(v.name == wanted for v in r)), None)
            if chosen is None:
                raise SourceError(
                    f"VERSION={self.version}: no {wanted}/metrics.csv in {src}; versions with metrics: "
                    f"{', '.join(v.name for v in versions)}"
                )
        for run in runs:
            hp = read_hparams(run[-1])
            steps = [first_and_last_step(v / "metrics.csv") for v in run]
            self._runs.append(
                {
                    "name": " + ".join(v.name for v in run),
                    "versions": [v.name for v in run],
                    "first_step": steps[0][0] + 1 if steps[0][0] is not None else None,
                    "last_step": steps[-1][1] + 1 if steps[-1][1] is not None else None,
                    "config": {k: v for k, v in flat(hp).items() if not isinstance(v, list)},
                    "read": run is chosen,
                }
            )
        return [v / "metrics.csv" for v in chosen]

    def records(self, path: Path, imp: Imported):
        """Rows merged per step (in file order of first appearance), each with the line it starts on."""
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or "step" not in header:
                raise SourceError(f"{path}:1: expected a CSVLogger header with a 'step' column, got {header}")
            self.columns = _columns(header, self.mapping, path)  # this file's: versions may log other names
            merged: dict[str, tuple[str, dict]] = {}
            for values in reader:
                where = f"{path}:{reader.line_num}"
                if len(values) != len(header):
                    raise SourceError(f"{where}: {len(values)} fields, the header has {len(header)}")
                record = dict(zip(header, values))
                key = record["step"]
                if key in merged:
                    target = merged[key][1]
                    target.update({k: v for k, v in record.items() if v != "" and target.get(k, "") == ""})
                else:
                    merged[key] = (where, record)
        yield from merged.values()

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        row = {ours: number(record[col] or None, where, col) for ours, col in self.columns.items()}
        step = required_step(record, "step", where) + 1  # Lightning's step counts from 0
        epoch = number(record.get("epoch") or None, where, "epoch")
        out = Rows()
        if row.get("loss") is not None:
            out.metrics = {"step": step, "epoch": epoch, **{k: v for k, v in row.items() if k not in VALIDATION}}
        if any(row.get(k) is not None for k in VALIDATION):
            out.validation = {"step": step, "epoch": epoch, **{k: row.get(k) for k in VALIDATION}}
        used = set(self.columns.values()) | {"step", "epoch"}
        rest, per_loader = {}, {}
        for col, text in record.items():
            if col in used or text == "":
                continue
            try:
                value = number(text, where, col)
            except SourceError:  # a column of ours must parse (an error naming the line); any other is counted
                imp.drop(col, "not a number")
                continue
            match = DATALOADER.fullmatch(col)
            base = match and next(
                (o for o, names in CANDIDATES.items() if o in VALIDATION and match.group(1) in names), None
            )
            if base:
                per_loader.setdefault(match.group(2), {})[base] = value
            else:
                rest[col] = value
        for loader, values in per_loader.items():
            imp.validation.append({"step": step, "epoch": epoch, "dataset": loader, **values})
        if extra := extra_row(step, "lightning", rest):
            imp.extra.append(extra)
        return out

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        configs = []
        for path in files:
            hparams = path.parent / "hparams.yaml"
            if hparams.is_file():
                configs.append(read_yaml(hparams))
                imp.files.append(hparams)
        hp = configs[-1] if configs else {}  # the newest segment's (a resume may extend the length)
        imp.source_config = hp
        imp.steps_planned, where = planned_steps(hp)
        last = max((r["step"] for r in imp.metrics), default=None)
        last_any = max(
            [r["step"] for r in imp.metrics + imp.validation + imp.extra if r.get("step") is not None], default=None
        )
        imp.steps_done = last_any if last_any is not None else last
        flat_hp = flat(hp)
        imp.train = {
            "lr": next((v for k, v in flat_hp.items() if k.rsplit(".", 1)[-1] in ("lr", "learning_rate")), None),
            "batch_size": next((v for k, v in flat_hp.items() if k.rsplit(".", 1)[-1] == "batch_size"), None),
            "seed": next((v for k, v in flat_hp.items() if k.rsplit(".", 1)[-1] == "seed"), None),
        }
        if len(self._runs) > 1:
            imp.runs = self._runs
            read = next(r for r in self._runs if r["read"])
            imp.warnings.append(
                f"{src} holds {len(self._runs)} different runs (told apart by hparams.yaml and steps): "
                + "; ".join(f"{r['name']} (steps {r['first_step']}–{r['last_step']})" for r in self._runs)
                + f"; read {read['name']}"
                + (" (the newest)" if not self.version else f" (VERSION={self.version})")
                + "; VERSION=<n> reads another"
            )
        if self._no_metrics:
            imp.warnings.append(
                f"{', '.join(self._no_metrics)}: no metrics.csv (crashed before logging?), not imported"
            )
