"""The one interface every importer implements.

An adapter states what it is and how to read its tool; everything else is shared:

    class Lingua(Adapter):
        name = "lingua"                                       # FROM=lingua
        description = "Meta Lingua: a dump_dir, its metrics.jsonl, or the job's stdout file"
        find = Find("metrics.jsonl")                          # its file(s) in a directory SRC
        requires = ("metrics",)                               # what an import of it must contain

        def records(self, path, imp): ...                     # (where, record) of one found file
        def rows(self, record, where, imp): ...               # one record -> Rows in our keys
        def finish(self, src, files, imp): ...                # optional: config, evaluations, plan

`Adapter.read(src)` runs them: find the files (a file SRC is read as given; nothing found is one
`SourceError` of the same shape for every tool), map every record, check something was read, number the
segments. Parsing helpers, warnings (`imp.warnings`), hashing and writing (write.py) are shared too.
Adding an importer is one module with one `Adapter` subclass, plus its line in `pipeline/importers/__init__.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pipeline.importers.common import Imported, SourceError, assign_segments


@dataclass(frozen=True)
class Find:
    """Where an adapter's file is when SRC is a directory.

    `pattern` (a glob) is looked for in SRC itself, or anywhere under it with `recursive`; if there is
    none there and `numbered` is set (e.g. "checkpoint-"), in SRC's `<numbered><n>/` subdirectories, in
    the order of n. One file is read, the last in that order (the newest), or every numbered one with
    `every` (a run resumed into a new logger version)."""

    pattern: str
    numbered: str | None = None
    recursive: bool = False
    every: bool = False

    def looked_for(self) -> str:
        where = f"{self.pattern} under it" if self.recursive else self.pattern
        return where + (f" (nor {self.numbered}*/{self.pattern})" if self.numbered else "")


@dataclass
class Rows:
    """One source record in this project's keys (README, "Run directory"); all empty: the record is skipped."""

    metrics: dict | None = None  # a train/metrics.jsonl row
    validation: dict | None = None  # a train/validation.jsonl row
    tasks: list[dict] = field(default_factory=list)  # eval/tasks.jsonl rows


ROW_KINDS = {
    "metrics": "training metrics",
    "validation": "validation metrics",
    "tasks": "task results",
}


class Adapter:
    """Reads one tool's files into an `Imported`. Subclasses set the class attributes and `records`/`rows`."""

    name: ClassVar[str]  # the FROM= value
    description: ClassVar[str]  # one line: the tool, and what SRC may be (CLI help, not-found errors)
    find: ClassVar[Find]
    requires: ClassVar[tuple[str, ...]] = ("metrics",)  # an import must hold rows of at least one of these
    takes_mapping: ClassVar[bool] = False  # MAP="ours=theirs" names the source's columns
    takes_version: ClassVar[bool] = False  # VERSION= picks one of several runs in SRC (and `locate` tells them apart)

    def __init__(self, mapping: dict[str, str] | None = None, version: str | None = None):
        self.mapping = mapping or {}
        self.version = version  # VERSION=: which of several runs in SRC to read (adapters that hold several)

    @classmethod
    def detect(cls, src: Path) -> bool:
        """Whether SRC looks like this tool's layout (`FROM=auto`): by default, `find` locates a file in it."""
        try:
            return bool(cls(None).locate(src)) if src.is_dir() else src.match(cls.find.pattern)
        except SourceError:
            return False

    # ---------------------------------------------------------------- what an adapter implements
    def records(self, path: Path, imp: Imported) -> Iterable[tuple[str, dict]]:
        """Each record of one found file, in order, with where it is ("file:line") for messages."""
        raise NotImplementedError

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        """One record in our keys; a malformed value raises `SourceError` naming `where`."""
        raise NotImplementedError

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        """What else the source states (its config, evaluations, planned steps); by default nothing."""

    # ---------------------------------------------------------------- shared
    def locate(self, src: Path) -> list[Path]:
        """The file(s) to read in SRC: a file as given, else by `find`; none is an error naming SRC."""
        if src.is_file():
            return [src]
        f = self.find
        found = sorted(src.rglob(f.pattern) if f.recursive else src.glob(f.pattern), key=lambda p: p.name)
        if found:
            return found[-1:]
        if f.numbered:
            number = re.compile(rf"{re.escape(f.numbered)}(\d+)")
            numbered = sorted(
                (p for p in src.glob(f"{f.numbered}*/{f.pattern}") if number.fullmatch(p.parent.name)),
                key=lambda p: int(number.fullmatch(p.parent.name).group(1)),
            )
            if numbered:
                return numbered if f.every else numbered[-1:]
        raise SourceError(f"{src}: no {f.looked_for()}; FROM={self.name} reads {self.description}")

    def read(self, src: Path) -> Imported:
        files = self.locate(src)
        imp = Imported(format=self.name, source=src)
        starts = []  # where each file's rows begin: a new file (logger version, event file) is a new segment
        for path in files:
            starts.append(len(imp.metrics))
            for where, record in self.records(path, imp):
                rows = self.rows(record, where, imp)
                if rows.metrics is not None:
                    imp.metrics.append(rows.metrics)
                if rows.validation is not None:
                    imp.validation.append(rows.validation)
                imp.tasks += rows.tasks
            imp.files.append(path)
        assign_segments(imp.metrics, starts[1:])
        self.finish(src, files, imp)
        empty = not any(getattr(imp, kind) for kind in self.requires)
        if empty and imp.status != "failed_before_first_step" and not imp.summary:
            wanted = " or ".join(ROW_KINDS[k] for k in self.requires)
            raise SourceError(f"{files[0]}: no records with {wanted}; is this a {self.name} run?")
        return imp


def registry(*adapters: type[Adapter]) -> dict[str, type[Adapter]]:
    """FROM= name -> adapter class, in the order given (the order help texts list them)."""
    names = [a.name for a in adapters]
    if len(set(names)) != len(names):
        raise ValueError(f"importer names must be unique, got {names}")
    return dict(zip(names, adapters))
