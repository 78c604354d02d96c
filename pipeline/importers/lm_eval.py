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
from pipeline.importers.adapter import Adapter, Find, Rows
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


class LmEval(Adapter):
    name = "lm-eval"
    description = "lm-evaluation-harness: a results_<time>.json, or the --output_path dir (its newest results file)"
    find = Find("results_*.json", recursive=True)
    requires = ("tasks",)

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
