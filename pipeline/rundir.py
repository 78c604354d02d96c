"""The run directory `runs/<EXP>/`: the only contract between stages and the report.

Every file is declared once in `pipeline/records.py` (path, writer, typed record); this class turns those
declarations into paths for one run, and finds its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline import records

RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def for_experiment(cls, name: str) -> RunDir:
        return cls(RUNS_DIR / name)

    def file(self, spec: records.RunFile) -> Path:
        return spec.at(self.root)

    def done(self, stage: str) -> Path:
        """The marker of a stage's completion (the stage table says where)."""
        from pipeline.stages import STAGE

        return self.root / STAGE[stage].done

    @property
    def config(self) -> Path:
        return self.file(records.CONFIG)

    @property
    def provenance(self) -> Path:
        return self.file(records.PROVENANCE)

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
        return self.file(records.METRICS)

    @property
    def validation(self) -> Path:
        return self.file(records.VALIDATION)

    @property
    def plan(self) -> Path:
        return self.file(records.PLAN)

    @property
    def train_done(self) -> Path:
        return self.file(records.TRAIN_DONE)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def perplexity(self) -> Path:
        return self.file(records.PERPLEXITY)

    @property
    def eval_done(self) -> Path:
        return self.file(records.EVAL_DONE)

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
