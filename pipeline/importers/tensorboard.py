"""TensorBoard event files (`events.out.tfevents.*`): the default logger of the HF Trainer
(`report_to=["tensorboard"]`, under `<output_dir>/runs/<time>_<host>/`) and of Lightning
(`lightning_logs/version_<n>/`, next to its `hparams.yaml`).

Read with TensorBoard's own reader (`tensorboard.backend.event_processing.event_file_loader`): every scalar
(`simple_value`, or a scalars-plugin tensor), and the HF Trainer's `args` text (its TrainingArguments, for
`max_steps`). One folder is one run; several event files in it (a resumed run appends a new file) are read in
their file order (the creation time in the name) and become segments. Names map as in
pipeline/importers/scalars.py; every other scalar is kept under its own name (train/extra.jsonl).

Steps: a folder with Lightning's `hparams.yaml` counts steps from 0 (rows are carried with step + 1, as for its
CSVLogger); the HF Trainer logs its `global_step`. Several folders with event files are several runs, except
Lightning versions that resume one another (same hparams apart from the length, steps that continue: the rule of
its CSVLogger), which are one run in segments. Runs are listed and the newest is read, or the one
`VERSION=<folder name>` names.

Not carried, and counted by tag in import.json `not_carried` (check `metrics_not_imported`): histograms, images,
audio, tensors of more than one number, and texts other than the HF Trainer's `args` / `model_config`. The
hparams plugin's entries are the run's config, not a series.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, SourceError, optional_package, planned_steps, read_yaml
from pipeline.importers.lightning import continues
from pipeline.importers.scalars import split


def created(path: Path) -> tuple[int, str]:
    """An event file's creation time, from its name (`events.out.tfevents.<unix time>.<host>.<pid>.<n>`)."""
    parts = path.name.split(".")
    return (int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0, path.name)


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"), key=created)


CONFIG_TEXTS = ("args", "model_config")  # the HF Trainer's TrainingArguments and model config, as text summaries
METADATA_PLUGINS = ("hparams",)  # TensorBoard's hparams plugin: the run's config, not a logged series


def text_tag(tag: str) -> str:
    """`args/text_summary` (what `SummaryWriter.add_text("args", …)` writes) -> `args`."""
    return tag[: -len("/text_summary")] if tag.endswith("/text_summary") else tag


def read_events(path: Path) -> tuple[list[tuple[int, str, float]], dict[str, str], list[tuple[str, str]]]:
    """(step, tag, value) of every scalar in file order, the text summaries (tag -> text), and (tag, kind) of
    every other value (a histogram, an image, audio, a text, a tensor of more than one number): not carried."""
    EventFileLoader = optional_package(  # noqa: N806 - a class, looked up at run time
        "tensorboard.backend.event_processing.event_file_loader", "tensorboard"
    ).EventFileLoader
    tensor_util = optional_package("tensorboard.util.tensor_util", "tensorboard")

    scalars, texts, other = [], {}, []
    try:
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    scalars.append((event.step, value.tag, float(value.simple_value)))
                elif plugin in METADATA_PLUGINS:
                    continue
                elif kind == "tensor" and plugin == "text":
                    array = tensor_util.make_ndarray(value.tensor)
                    item = array.reshape(-1)[0] if array.size else b""
                    texts[text_tag(value.tag)] = (
                        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
                    )
                elif kind == "tensor" and plugin in ("scalars", ""):
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size == 1 and array.dtype.kind in "fiu":
                        scalars.append((event.step, value.tag, float(array.item())))
                    else:
                        other.append((value.tag, f"tensor of shape {list(array.shape)}"))
                else:  # histo, image, audio, or a tensor of the histograms/images/audio/pr_curves/… plugins
                    other.append(
                        (
                            value.tag,
                            {"histo": "histogram", "image": "image", "audio": "audio"}.get(
                                kind, plugin.rstrip("s") if plugin else str(kind)
                            ),
                        )
                    )
    except Exception as exc:  # a torn or foreign file: TensorBoard's reader says why
        raise SourceError(f"{path}: not a readable TensorBoard event file ({exc})") from None
    return scalars, texts, other


def placeholder(step: int, tag: str, value: float) -> bool:
    """Lightning's TensorBoardLogger writes `hp_metric` -1 at step 0 with the hparams (`default_hp_metric`): a
    placeholder for a metric nobody logged, not a value."""
    return tag == "hp_metric" and step == 0 and value == -1


def step_range(folder: Path) -> tuple[int | None, int | None]:
    """First and last scalar step of a folder's event files (Lightning's, from 0)."""
    steps = [s for f in event_files(folder) for s, tag, v in read_events(f)[0] if not placeholder(s, tag, v)]
    return (min(steps), max(steps)) if steps else (None, None)


def group_lightning(folders: list[Path]) -> list[list[Path]]:
    """Lightning's TensorBoardLogger folders (version_<n>/ with hparams.yaml) grouped into runs as its CSVLogger
    versions are (pipeline/importers/lightning.py): same hparams apart from the length and steps that continue
    the previous version's is a resume; anything else is a run of its own."""
    runs: list[list[Path]] = []
    info = {f: (read_yaml(f / "hparams.yaml"), *step_range(f)) for f in folders}
    for f in folders:
        hp, first, _ = info[f]
        last_run = runs[-1] if runs else None
        if last_run and (f / "hparams.yaml").is_file() and (last_run[-1] / "hparams.yaml").is_file():
            prev_hp, prev_first, prev_last = info[last_run[-1]]
            if continues(hp, prev_hp, first, prev_first, prev_last):
                last_run.append(f)
                continue
        runs.append([f])
    return runs


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
        runs = group_lightning(folders) if len(folders) > 1 else [folders]
        chosen = runs[-1]  # the run holding the newest folder
        if self.version:
            named = [
                r for r in runs if any(f.name == self.version or str(f.relative_to(src)) == self.version for f in r)
            ]
            if not named:
                raise SourceError(
                    f"VERSION={self.version}: no event-file folder of that name in {src}; there are: "
                    + ", ".join(str(f.relative_to(src)) for f in folders)
                )
            chosen = named[0]
        self._runs = [
            {
                "name": " + ".join(str(f.relative_to(src)) or "." for f in run),
                "folders": [str(f.relative_to(src)) or "." for f in run],
                "files": sum(len(event_files(f)) for f in run),
                "read": run is chosen,
            }
            for run in runs
        ]
        return [p for f in chosen for p in event_files(f)]

    def records(self, path: Path, imp: Imported):
        scalars, texts, other = read_events(path)
        self._texts = {**getattr(self, "_texts", {}), **texts}
        for tag, kind in other:
            imp.drop(tag, kind)
        for tag in texts:
            if tag not in CONFIG_TEXTS:
                imp.drop(tag, "text")
        lightning = (path.parent / "hparams.yaml").is_file()
        by_step: dict[int, dict[str, float]] = {}
        for step, tag, value in scalars:
            if lightning and placeholder(step, tag, value):
                continue
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
        folder = files[-1].parent  # the newest segment's (a resume may extend the length)
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
                f"{src} holds {len(runs)} TensorBoard runs (folders of event files; Lightning versions that resume "
                f"one another are one run): "
                + ", ".join(r["name"] for r in runs)
                + f"; read {read}"
                + (" (the newest)" if not self.version else f" (VERSION={self.version})")
                + "; VERSION=<folder> reads another"
            )
