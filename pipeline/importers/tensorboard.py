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

import functools
import json
import struct
from pathlib import Path

import numpy as np

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


FRAME = struct.Struct("<Q")  # TFRecord: uint64 length, masked CRC-32C of it, the data, masked CRC-32C of the data


def masked_crc32c(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC-32C of each `buf[start : start + length]`, all records at once: byte j of every
    record at least j + 1 long in one numpy step (TensorBoard's own Python reader goes byte by byte: ~1 ms/event)."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import CRC_TABLE

    table = np.array(CRC_TABLE, dtype=np.uint32)
    order = np.argsort(-lengths, kind="stable")  # longest first: the records still going are a prefix
    starts_sorted, lengths_sorted = starts[order], lengths[order]
    crc = np.full(len(order), 0xFFFFFFFF, dtype=np.uint32)
    going = len(order)
    for j in range(int(lengths_sorted[0]) if going else 0):
        while going and lengths_sorted[going - 1] <= j:
            going -= 1
        c = crc[:going]
        crc[:going] = table[(c ^ buf[starts_sorted[:going] + j]) & 0xFF] ^ (c >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    masked = ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)
    out = np.empty_like(masked)
    out[order] = masked
    return out


def _u32(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The little-endian uint32 at each offset `at` of `buf`."""
    b = [buf[at + i].astype(np.uint32) for i in range(4)]
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def event_records(path: Path) -> tuple[list[bytes], bool]:
    """The serialized `Event`s of an event file, both CRCs checked, and whether its last record is cut off (a
    writer killed mid-write: TensorBoard stops reading there, and so does this). A CRC that fails raises."""
    data = path.read_bytes()
    starts, lengths, pos = [], [], 0
    while pos + 12 <= len(data):
        (length,) = FRAME.unpack_from(data, pos)
        if pos + 16 + length > len(data):
            break
        starts.append(pos)
        lengths.append(length)
        pos += 16 + length
    buf = np.frombuffer(data, dtype=np.uint8)
    # a partial record at the end is a torn write only if its length is intact (else the file is damaged)
    heads = np.array(starts + ([pos] if pos + 12 <= len(data) else []), dtype=np.int64)
    offsets, sizes = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    for what, at, n, crc_at in (
        ("length", heads, np.full(len(heads), 8), heads + 8),
        ("data", offsets + 12, sizes, offsets + 12 + sizes),
    ):
        bad = np.flatnonzero(masked_crc32c(buf, at, n) != _u32(buf, crc_at)) if len(at) else []
        if len(bad):
            raise SourceError(
                f"{path}: record {int(bad[0]) + 1} (byte {int(heads[bad[0]])}): its {what} fails its CRC "
                f"(a damaged event file)"
            )
    return [data[o + 12 : o + 12 + n] for o, n in zip(starts, lengths)], pos < len(data)


def read_events(path: Path) -> tuple[list[tuple[int, str, float]], dict[str, str], list[tuple[str, str]], bool]:
    """Read once per file version: grouping Lightning versions (`step_range`) and importing share it; callers
    must not change what it returns."""
    stat = path.stat()
    return _read_events(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_events(path: Path, _mtime_ns: int, _size: int):
    """(step, tag, value) of every scalar in file order, the text summaries (tag -> text), (tag, kind) of every
    other value (a histogram, an image, audio, a text, a tensor of more than one number: not carried), and whether
    the file's last record was cut off. Events are TensorBoard's protobuf (`event_pb2.Event`), read raw: a
    scalar is a `simple_value` (what torch's and tensorboardX's SummaryWriter write) or a scalars-plugin tensor."""
    event_pb2 = optional_package("tensorboard.compat.proto.event_pb2", "tensorboard")
    tensor_util = optional_package("tensorboard.util.tensor_util", "tensorboard")

    records, torn = event_records(path)
    scalars, texts, other = [], {}, []
    try:
        for record in records:
            event = event_pb2.Event.FromString(record)
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if kind == "simple_value":
                    scalars.append((event.step, value.tag, value.simple_value))
                    continue
                plugin = value.metadata.plugin_data.plugin_name
                if plugin in METADATA_PLUGINS:
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
                                kind, plugin.removesuffix("s") if plugin else str(kind)
                            ),
                        )
                    )
    except Exception as exc:  # a foreign file whose records happen to frame: protobuf says why
        raise SourceError(f"{path}: not a readable TensorBoard event file ({exc})") from None
    return scalars, texts, other, torn


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
        scalars, texts, other, torn = read_events(path)
        if torn:
            imp.warnings.append(f"{path.name}: last record is cut off (the writer was killed?); skipped")
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
