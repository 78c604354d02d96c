"""TensorBoard event files (`events.out.tfevents.*`): the default logger of the HF Trainer
(`report_to=["tensorboard"]`, under `<output_dir>/runs/<time>_<host>/`) and of Lightning
(`lightning_logs/version_<n>/`, next to its `hparams.yaml`).

Read with TensorBoard's own reader (`tensorboard.backend.event_processing.event_file_loader`): every scalar
(`simple_value`, or a scalars-plugin tensor), and the HF Trainer's `args` text (its TrainingArguments, for
`max_steps`). One folder is one run; several event files in it (a resumed run appends a new file) are read in
their file order (the creation time in the name) and become segments. Names map as in
pipeline/importers/scalars.py; every other scalar is kept under its own name (train/extra.jsonl).

Steps: a folder with Lightning's `hparams.yaml` counts steps from 0 (rows are carried with step + 1, as for its
CSVLogger); the HF Trainer logs its `global_step`. Several folders with event files are several runs: they
are listed and the newest is read, or the one `VERSION=<folder name>` names.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, SourceError, planned_steps, read_yaml
from pipeline.importers.scalars import split


def created(path: Path) -> tuple[int, str]:
    """An event file's creation time, from its name (`events.out.tfevents.<unix time>.<host>.<pid>.<n>`)."""
    parts = path.name.split(".")
    return (int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0, path.name)


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"), key=created)


def read_events(path: Path) -> tuple[list[tuple[int, str, float]], dict[str, str]]:
    """(step, tag, value) of every scalar in file order, and the text summaries (tag -> text)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    scalars, texts = [], {}
    try:
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if value.HasField("simple_value"):
                    scalars.append((event.step, value.tag, float(value.simple_value)))
                elif value.HasField("tensor") and plugin in ("scalars", ""):
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size == 1 and array.dtype.kind in "fiu":
                        scalars.append((event.step, value.tag, float(array.item())))
                elif value.HasField("tensor") and plugin == "text":
                    array = tensor_util.make_ndarray(value.tensor)
                    item = array.reshape(-1)[0] if array.size else b""
                    texts[value.tag] = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    except Exception as exc:  # a torn or foreign file: TensorBoard's reader says why
        raise SourceError(f"{path}: not a readable TensorBoard event file ({exc})") from None
    return scalars, texts


class TensorBoard(Adapter):
    name = "tensorboard"
    description = "TensorBoard event files (events.out.tfevents.*): a log folder, or a dir holding such folders"
    find = Find("events.out.tfevents.*", recursive=True)
    takes_mapping = True
    takes_version = True

    def locate(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        folders = sorted(
            {p.parent for p in src.rglob("events.out.tfevents.*")}, key=lambda f: (created(event_files(f)[-1]), str(f))
        )
        if not folders:
            return super().locate(src)
        chosen = folders[-1]
        if self.version:
            named = [f for f in folders if f.name == self.version or str(f.relative_to(src)) == self.version]
            if not named:
                raise SourceError(
                    f"VERSION={self.version}: no event-file folder of that name in {src}; there are: "
                    + ", ".join(str(f.relative_to(src)) for f in folders)
                )
            chosen = named[0]
        self._runs = [
            {"name": str(f.relative_to(src)) or ".", "files": len(event_files(f)), "read": f == chosen} for f in folders
        ]
        return event_files(chosen)

    def records(self, path: Path, imp: Imported):
        scalars, texts = read_events(path)
        self._texts = {**getattr(self, "_texts", {}), **texts}
        lightning = (path.parent / "hparams.yaml").is_file()
        by_step: dict[int, dict[str, float]] = {}
        for step, tag, value in scalars:
            by_step.setdefault(step + 1 if lightning else step, {})[tag] = value
        if not by_step:
            return []
        return [(str(path), {"by_step": by_step})]

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        metrics, validation, extra = split(record["by_step"], self.mapping, "tensorboard")
        imp.metrics += metrics  # each file's rows in step order; the file order keeps a resume's segments
        imp.validation += validation
        imp.extra += extra
        self._last = max([*record["by_step"], getattr(self, "_last", 0)])
        return Rows()

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        folder = files[0].parent
        hparams = folder / "hparams.yaml"
        if hparams.is_file():
            imp.source_config = read_yaml(hparams)
            imp.files.append(hparams)
        elif "args" in getattr(self, "_texts", {}):
            try:
                imp.source_config = json.loads(self._texts["args"])
            except json.JSONDecodeError:
                imp.source_config = {"args": self._texts["args"]}
        imp.steps_planned, _ = planned_steps(imp.source_config)
        imp.steps_done = getattr(self, "_last", None)
        runs = getattr(self, "_runs", [])
        if len(runs) > 1:
            imp.runs = runs
            read = next(r["name"] for r in runs if r["read"])
            imp.warnings.append(
                f"{src} holds {len(runs)} TensorBoard runs (folders of event files): "
                + ", ".join(r["name"] for r in runs)
                + f"; read {read}"
                + (" (the newest)" if not self.version else f" (VERSION={self.version})")
                + "; VERSION=<folder> reads another"
            )
