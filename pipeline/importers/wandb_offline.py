"""W&B offline runs (`WANDB_MODE=offline`): `wandb/offline-run-<time>-<id>/run-<id>.wandb`.

The `.wandb` file is W&B's transaction log: a LevelDB-style log of 32 KiB blocks whose records are
`wandb_internal_pb2.Record` protobufs (what `wandb sync` uploads). The `wandb` package (0.19+) has no Python
reader for it any more (its Go core reads it), so the block framing is read here (`records`: 7-byte file
header `:W&B` 0xBEE1 v0, then per record a CRC32, length and FULL/FIRST/MIDDLE/LAST type) and each record is
parsed with the package's own protobuf class. Read from it:

    history    one row per `wandb.log` call (`_step`; the HF Trainer's `train/global_step`, Lightning's
               `trainer/global_step` where logged): names map as in pipeline/importers/scalars.py, every
               other number is kept under its own name (train/extra.jsonl)
    config     the run's config: `wandb.init(config=…)` in the run record, later `wandb.config` updates in config
               records (planned steps: a positive `max_steps` at any depth, e.g. `trainer.max_steps`)
    summary    the final summary (train/DONE `summary`)
    exit       the exit code: non-zero is status `failed`; no exit record: the process never finished

Media in the history (histograms, images, tables: `<name>/_type` items) and values that are not numbers (a text)
are not series: each is counted by name in import.json `not_carried` (check `metrics_not_imported`).

`files/config.yaml` / `files/wandb-summary.json`, when present, are read as well (config, summary).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import yaml

from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, SourceError, is_number, optional_package, planned_steps
from pipeline.importers.scalars import split

BLOCK = 32768
HEADER = struct.Struct("<4sHB")
RECORD = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if len(data) < HEADER.size or HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise SourceError(f"{path}: not a W&B transaction log (no ':W&B' header)")
    out, pending, pos = [], [], HEADER.size  # pending: the parts of a record split over blocks, joined once
    while pos + RECORD.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < RECORD.size:  # the block's tail is padding
            pos += room
            continue
        _crc, length, kind = RECORD.unpack_from(data, pos)
        if kind == 0 and length == 0:
            pos += room
            continue
        body = data[pos + RECORD.size : pos + RECORD.size + length]
        pos += RECORD.size + length
        if len(body) < length:
            break  # torn at the end: the process was killed mid-write
        if kind == FULL:
            out.append(body)
        elif kind == FIRST:
            pending = [body]
        elif kind == MIDDLE:
            pending.append(body)
        elif kind == LAST:
            out.append(b"".join([*pending, body]))
            pending = []
    return out


def _value(item):
    text = item.value_json
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def history_row(items) -> tuple[dict, dict[str, str]]:
    """One `wandb.log` call: name -> value, and name -> kind of every media object in it (a histogram, an image,
    a table: W&B writes them as `<name>/_type`, `<name>/values`, … items), which are not values of a series."""
    row, media = {}, {}
    for item in items:
        parts = list(item.nested_key) or [item.key]
        if len(parts) > 1 and parts[-1] == "_type":
            media["/".join(parts[:-1])] = str(_value(item))
        row["/".join(parts)] = _value(item)
    for name in media:
        row = {k: v for k, v in row.items() if k != name and not k.startswith(name + "/")}
    return row, media


class WandbOffline(Adapter):
    name = "wandb"
    description = "W&B offline run: wandb/offline-run-*/ (its run-<id>.wandb), or the .wandb file"
    find = Find("offline-run-*/run-*.wandb", recursive=True)
    takes_mapping = True
    takes_version = True

    @classmethod
    def detect(cls, src: Path) -> bool:
        if src.is_file():
            return src.suffix == ".wandb"
        return any(src.glob("run-*.wandb")) or any(src.rglob("offline-run-*/run-*.wandb"))

    def locate(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        found = sorted(src.glob("run-*.wandb")) or sorted(
            src.rglob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name
        )
        if not found:
            return super().locate(src)
        if self.version:
            found = [p for p in found if self.version in p.parent.name] or found[:0]
            if not found:
                raise SourceError(f"VERSION={self.version}: no offline-run-*{self.version}*/ in {src}")
        self._runs = [{"name": p.parent.name, "read": p == found[-1]} for p in found] if len(found) > 1 else []
        return found[-1:]

    def records(self, path: Path, imp: Imported):
        wandb_internal_pb2 = optional_package("wandb.proto.wandb_internal_pb2", "wandb")

        self._config, self._summary, self._exit, history = {}, {}, None, []
        for body in raw_records(path):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(body)
            except Exception:  # noqa: BLE001 - protobuf's DecodeError
                imp.warnings.append(f"{path.name}: a record that does not parse was skipped")
                continue
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row, media = history_row(record.history.item)
                for name, what in media.items():
                    imp.drop(name, what)
                history.append(row)
            elif kind in ("config", "run"):  # wandb.init(config=…) is in the run record, later updates in config
                for item in (record.config if kind == "config" else record.run.config).update:
                    self._config[_key(item)] = _value(item)
            elif kind == "summary":
                for item in record.summary.update:
                    self._summary[_key(item)] = _value(item)
            elif kind == "exit":
                self._exit = record.exit.exit_code
        by_step: dict[int, dict] = {}
        for row in history:
            step = next((row[k] for k in ("train/global_step", "trainer/global_step") if is_number(row.get(k))), None)
            step = row.get("_step") if step is None else step
            if not is_number(step):
                continue
            values = imp.numbers(row, skip=("_wandb",))
            by_step.setdefault(int(step), {}).update(values)
        return [(str(path), {"by_step": by_step})] if by_step else []

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        metrics, validation, extra = split(record["by_step"], self.mapping, "wandb")
        imp.metrics += metrics
        imp.validation += validation
        imp.extra += extra
        self._last = max(record["by_step"])
        return Rows()

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        run_dir = files[0].parent
        config = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in self._config.items()}
        if (run_dir / "files" / "config.yaml").is_file() and not config:
            raw = yaml.safe_load((run_dir / "files" / "config.yaml").read_text(encoding="utf-8")) or {}
            config = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in raw.items()}
            imp.files.append(run_dir / "files" / "config.yaml")
        imp.source_config = {k: v for k, v in config.items() if k != "_wandb"}
        imp.steps_planned, _ = planned_steps(imp.source_config)
        summary = self._summary
        if (run_dir / "files" / "wandb-summary.json").is_file() and not summary:
            summary = json.loads((run_dir / "files" / "wandb-summary.json").read_text(encoding="utf-8"))
            imp.files.append(run_dir / "files" / "wandb-summary.json")
        imp.summary = {k: v for k, v in summary.items() if is_number(v) and not k.startswith("_")}
        steps = [summary.get(k) for k in ("train/global_step", "trainer/global_step")] + [getattr(self, "_last", None)]
        imp.steps_done = max((int(s) for s in steps if is_number(s)), default=None)
        if self._exit is None:
            imp.warnings.append(f"{files[0].name}: no exit record (the process was killed, or is still running)")
        elif self._exit != 0:
            imp.status, imp.status_why = "failed", f"W&B exit record: exit code {self._exit}"
        if self._runs:
            imp.runs = self._runs
            imp.warnings.append(
                f"{src} holds {len(self._runs)} W&B runs: {', '.join(r['name'] for r in self._runs)}; read the newest "
                f"({files[0].parent.name}); VERSION=<run id> reads another"
            )
