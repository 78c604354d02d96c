"""lm-evaluation-harness result files: `results_<timestamp>.json` written by `lm_eval --output_path`.

    <output_path>/<model_name>/results_2025-10-14T01-29-03.123456.json
      results           task -> {"acc,none": 0.25, "acc_stderr,none": 0.004, "alias": …}
      configs           task -> the task's config (num_fewshot, output_type, doc_to_choice, …)
      versions, n-shot, higher_is_better, n-samples {"original", "effective"}
      config            model, model_args, batch_size, device, limit
      date, git_hash, pretty_env_info, transformers_version, lm_eval_version, total_evaluation_time_seconds

Given a directory, the newest results file under it is read (by the timestamp in its name).
Chance levels come from the task config's literal choice list, else from the task's known number of
options (pipeline/evaluate/results.py); otherwise they stay unknown.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.evaluate.results import chance_from_configs, normalise
from pipeline.importers.common import Imported, SourceError, number, read_json

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


def _results_file(src: Path) -> Path:
    if src.is_file():
        return src
    found = sorted(src.rglob("results_*.json"), key=lambda p: p.name)
    if not found:
        raise SourceError(f"{src}: no results_*.json under it; expected lm_eval's --output_path")
    return found[-1]


def read(src: Path) -> Imported:
    path = _results_file(src)
    result = read_json(path)
    if not isinstance(result.get("results"), dict) or not result["results"]:
        raise SourceError(f"{path}: no 'results' object with tasks (expected lm-eval's results_<time>.json)")
    for task, metrics in result["results"].items():
        if not isinstance(metrics, dict):
            raise SourceError(f"{path}: results.{task}: expected an object of metrics, got {type(metrics).__name__}")
    imp = Imported(format="lm-eval", source=src, files=[path], lm_eval=result)
    imp.tasks = normalise(result, chance_from_configs(result))
    if not imp.tasks:
        raise SourceError(f"{path}: results has no 'metric,filter' values (e.g. \"acc,none\")")
    config = result.get("config") or {}
    total = number(result.get("total_evaluation_time_seconds"), f"{path}: total_evaluation_time_seconds")
    imp.eval_info = {
        "source": path.name,
        "model": config.get("model"),
        "model_args": config.get("model_args"),
        "batch_size": config.get("batch_size"),
        "device": config.get("device"),
        "limit": config.get("limit"),
        "total_s": total,
        "time_utc": result.get("date"),
    }
    imp.recovered = {k: result[k] for k in ENV_KEYS if k in result}
    imp.source_config = {"config": config, "versions": result.get("versions"), "n-shot": result.get("n-shot")}
    if n_missing := [t for t in result["results"] if t not in (result.get("n-samples") or {})]:
        imp.warnings.append(f"no n-samples for {', '.join(n_missing)}: item counts unknown")
    return imp
