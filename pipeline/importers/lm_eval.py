"""lm-evaluation-harness result files: `results_<timestamp>.json` written by `lm_eval --output_path`.

    <output_path>/<model_name>/results_2025-10-14T01-29-03.123456.json
      results           task -> {"acc,none": 0.25, "acc_stderr,none": 0.004, "alias": …}
      configs           task -> the task's config (num_fewshot, output_type, doc_to_choice, …)
      versions, n-shot, higher_is_better, n-samples {"original", "effective"}
      config            model, model_args, batch_size, device, limit
      date, git_hash, pretty_env_info, transformers_version, lm_eval_version, total_evaluation_time_seconds

Given a directory, every JSON file under it that holds a `results` object of tasks is a results file
(`results_<time>.json`, 0.4.0's `results.json`, or a renamed one); the newest is read (by the timestamp in
its name, else its `date`). `samples_<task>_<time>.jsonl` next to it (`--log_samples`) are read for item
counts and how many items scored above 0.

A score that is not a number (not a stderr's "N/A") is counted in import.json `not_carried`.

Groups (`groups`, or `group_subtasks` entries with subtasks) are task rows with `is_group: true`; each
subtask row names its `group`. A numeric `date` (Unix time) becomes UTC ISO time.
Chance levels come from the task config's literal choice list, else from the task's known number of
options (pipeline/evaluate/results.py); otherwise they stay unknown.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from pipeline.evaluate.results import chance_from_configs, normalise
from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import Imported, SourceError, is_number, kind_of, number, read_json, read_jsonl

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d+)?")

ENV_KEYS = (
    "date",
    "git_hash",
    "transformers_version",
    "lm_eval_version",
    "model_name",
    "model_source",
    "pretty_env_info",
    "total_evaluation_time_seconds",
    "chat_template",
    "system_instruction",
)


def utc(date) -> str | None:
    """lm-eval's `date`: a Unix time (float) in 0.4.x, a string elsewhere; shown as UTC ISO time."""
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        return datetime.fromtimestamp(date, UTC).isoformat(timespec="seconds")
    return date


def _parsed(path: Path):
    """A JSON file's object, parsed once however often detect, locate and their sort key ask; None if unreadable."""
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parse(path: Path, _mtime_ns: int, size: int):
    if size > 64 << 20:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_results(path: Path) -> bool:
    obj = _parsed(path)
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("results"), dict)
        and bool(obj["results"])
        and ("configs" in obj or "versions" in obj or "config" in obj)
    )


def _when(path: Path) -> tuple:
    if match := TIMESTAMP.search(path.name):
        return (match.group(0), str(path))
    obj = _parsed(path)
    date = (utc(obj.get("date")) if isinstance(obj, dict) else None) or ""
    return (str(date).replace(":", "-"), str(path))


def mark_groups(result: dict, tasks: list[dict]) -> None:
    """Group rows (`is_group`) and each subtask's `group`, from `groups` and `group_subtasks`."""
    subtasks = {g: subs for g, subs in (result.get("group_subtasks") or {}).items() if subs}
    groups = set(result.get("groups") or {}) | set(subtasks)
    parent = {sub: g for g, subs in subtasks.items() for sub in subs}
    for row in tasks:
        if row["task"] in groups:
            row["is_group"] = True
        if row["task"] in parent:
            row["group"] = parent[row["task"]]
    seen = {row["task"] for row in tasks}
    for group in sorted(groups - seen):  # a group with no score of its own (' ': ' ') is still a group
        tasks.append({"task": group, "metric": "—", "value": None, "is_group": True, "group": parent.get(group)})


def read_samples(path: Path, imp: Imported) -> dict:
    """`samples_<task>_<time>.jsonl` (`--log_samples`): per task and "metric,filter" (lm-eval's own key), the items
    (lines) and, where the per-item score is a number, how many scored above 0 (a perplexity's per-item value is a
    pair, so it has no such count)."""
    out = {}
    stamp = TIMESTAMP.search(path.name)
    for sample_file in sorted(path.parent.glob("samples_*.jsonl")):
        if stamp and stamp.group(0) not in sample_file.name:
            continue
        task = re.sub(r"_\d{4}-\d{2}-\d{2}T[\d.-]+$", "", sample_file.stem[len("samples_") :])
        counts: dict[str, dict] = {}
        for _, obj in read_jsonl(sample_file, imp.warnings):
            for metric in obj.get("metrics") or []:
                if metric not in obj:
                    continue
                value = obj[metric]
                c = counts.setdefault(f"{metric},{obj.get('filter') or 'none'}", {"items": 0, "above_zero": 0})
                c["items"] += 1
                if is_number(value) and c["above_zero"] is not None:
                    c["above_zero"] += value > 0
                else:
                    c["above_zero"] = None
        out[task] = counts
        imp.files.append(sample_file)
    return out


class LmEval(Adapter):
    name = "lm-eval"
    description = "lm-evaluation-harness: a results file (results_<time>.json, results.json), or --output_path"
    find = Find("results_*.json", recursive=True)
    requires = ("tasks",)

    @classmethod
    def detect(cls, src: Path) -> bool:
        return _is_results(src) if src.is_file() else any(_is_results(p) for p in src.rglob("*.json"))

    def locate(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        found = [p for p in src.rglob("*.json") if _is_results(p)]
        if not found:
            return super().locate(src)
        return sorted(found, key=_when)[-1:]

    def records(self, path: Path, imp: Imported) -> list[tuple[str, dict]]:
        """The whole results file is one record."""
        result = read_json(path)
        if not isinstance(result.get("results"), dict) or not result["results"]:
            raise SourceError(f"{path}: no 'results' object with tasks (expected lm-eval's results_<time>.json)")
        for task, metrics in result["results"].items():
            if not isinstance(metrics, dict):
                raise SourceError(
                    f"{path}: results.{task}: expected an object of metrics, got {type(metrics).__name__}"
                )
        imp.lm_eval = result
        return [(str(path), result)]

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        tasks = normalise(record, chance_from_configs(record))
        if not tasks:
            raise SourceError(f"{where}: results has no 'metric,filter' values (e.g. \"acc,none\")")
        return Rows(tasks=tasks)

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        path, result = files[0], imp.lm_eval
        config = result.get("config") or {}
        total = number(result.get("total_evaluation_time_seconds"), f"{path}: total_evaluation_time_seconds")
        samples = read_samples(path, imp)
        imp.eval_info = {
            "source": path.name,
            "model": config.get("model"),
            "model_args": config.get("model_args"),
            "batch_size": config.get("batch_size"),
            "device": config.get("device"),
            "limit": config.get("limit"),
            "total_s": total,
            "time_utc": utc(result.get("date")),
            **({"samples": samples} if samples else {}),
        }
        mark_groups(result, imp.tasks)
        configs = result.get("configs") or {}
        for row in imp.tasks:
            if output_type := (configs.get(row["task"]) or {}).get("output_type"):
                row["output_type"] = output_type
        imp.recovered = {k: result[k] for k in ENV_KEYS if k in result}
        imp.source_config = {"config": config, "versions": result.get("versions"), "n-shot": result.get("n-shot")}
        for task, metrics in result["results"].items():  # a score that is not a number has no task row
            for key, value in metrics.items():
                if "," in key and "_stderr" not in key and value not in (None, "N/A", " ") and not is_number(value):
                    imp.drop(f"{task} {key}", kind_of(value))
        groups = {r["task"] for r in imp.tasks if r.get("is_group")}
        if n_missing := [t for t in result["results"] if t not in (result.get("n-samples") or {}) and t not in groups]:
            imp.warnings.append(f"no n-samples for {', '.join(n_missing)}: item counts unknown")
