"""The run directory `runs/<EXP>/`: the only contract between stages and the report.

Every path a stage writes is named here (and documented in the README's run-directory table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUNS_DIR = Path("runs")
STAGES = ("prepare", "train", "eval", "report")


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def for_experiment(cls, name: str) -> RunDir:
        return cls(RUNS_DIR / name)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    def stamp(self, stage: str) -> Path:
        return self.root / "stamps" / f"{stage}.sha256"

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def metrics(self) -> Path:
        return self.train / "metrics.jsonl"

    @property
    def validation(self) -> Path:
        return self.train / "validation.jsonl"

    @property
    def plan(self) -> Path:
        return self.train / "plan.json"

    @property
    def train_done(self) -> Path:
        return self.train / "DONE"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def perplexity(self) -> Path:
        return self.eval / "perplexity.json"

    @property
    def eval_done(self) -> Path:
        return self.eval / "DONE"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints, oldest first (a folder counts once its train_state.pt exists)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(
            p
            for p in self.checkpoints.iterdir()
            if p.is_dir() and p.name.isdigit() and (p / "train_state.pt").is_file()
        )

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoint_dirs()
        return found[-1] if found else None
