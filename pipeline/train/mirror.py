"""`train.mirror: [tensorboard, wandb]`: labnote's own metrics, also written where people already watch runs.

Every numeric key of each train/metrics.jsonl and train/validation.jsonl line is logged at its step under its own
name (`loss`, `lr`, `val_loss`, …): the names labnote's importers map back to these keys
(pipeline/importers/scalars.py), so `make import FROM=tensorboard|wandb` of a mirror gives the same values.
The planned length goes with them (`max_steps`: TensorBoard's `args` text, W&B's config), as the importers read it.

- `tensorboard`: event files in `runs/<EXP>/mirror/tensorboard/` (`torch.utils.tensorboard.SummaryWriter`; a
  resume adds a new event file, which the importer reads as a new segment);
- `wandb`: an offline run in `runs/<EXP>/mirror/wandb/offline-run-*/` (`wandb.init(mode="offline")`; sync it
  with `wandb sync` where there is a network).

Both packages are optional and imported only when asked for; a missing one stops `resolve` with one line
(`check_available`, called by preflight). Only rank 0 writes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

from pipeline.errors import ConfigError

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
SKIPPED = {"step", "segment", "time_utc"}  # the step is the x axis; the rest are not series


def check_available(targets: list[str]) -> None:
    for target in targets:
        if importlib.util.find_spec(PACKAGES[target]) is None:
            raise ConfigError(
                f"train.mirror: {target} needs the {PACKAGES[target]} package, which is not installed here "
                f"(pip install {PACKAGES[target]}, or remove it from train.mirror)"
            )


def folder(run_root: Path, target: str) -> Path:
    return Path(run_root) / "mirror" / target


def scalars(record: dict) -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if key in SKIPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class Mirror:
    """The writers `train.mirror` asks for; `log` takes a metrics or validation record."""

    def __init__(self, targets: list[str], run_root: Path, name: str, steps_planned: int, config: dict):
        self.tb = self.wandb_run = None
        if "tensorboard" in targets:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(folder(run_root, "tensorboard")))
            self.tb.add_text("args", json.dumps({"max_steps": steps_planned}))
        if "wandb" in targets:
            import wandb

            where = folder(run_root, "wandb").parent  # wandb puts its own `wandb/` folder under dir
            where.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_run = wandb.init(
                mode="offline",
                dir=str(where),
                project="labnote",
                name=name,
                config={**config, "max_steps": steps_planned},
                settings=wandb.Settings(console="off", x_disable_stats=True),
            )

    def log(self, record: dict) -> None:
        values, step = scalars(record), int(record["step"])
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({**values, "train/global_step": step}, step=step)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self, exit_code: int = 0) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
