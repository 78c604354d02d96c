"""lm-eval's result object -> one flat row per (task, metric): the rows of `eval/tasks.jsonl`.

Shared by the eval stage (chance measured from the requests it saw) and by `make import FROM=lm-eval`
(chance read from the task config the results file carries). Imports neither torch nor lm-eval.
"""

from __future__ import annotations

from collections.abc import Callable

# Answer options per item of common multiple-choice tasks, for result files whose task config does not
# list its choices (doc_to_choice is a template there). From each task's definition in lm-eval.
KNOWN_CHOICES = {
    "hellaswag": 4,
    "piqa": 2,
    "winogrande": 2,
    "arc_easy": 4,
    "arc_challenge": 4,
    "boolq": 2,
    "copa": 2,
    "openbookqa": 4,
    "sciq": 4,
    "mmlu": 4,
    "race": 4,
    "siqa": 3,
    "social_iqa": 3,
    "commonsense_qa": 5,
    "logiqa": 4,
    "mathqa": 5,
    "rte": 2,
    "wic": 2,
    "wsc": 2,
    "cb": 3,
    "mnli": 3,
}
CHANCE_METRICS = ("acc", "acc_norm")


def normalise(result: dict, chance: Callable[[str], float | None]) -> list[dict]:
    rows = []
    for task, metrics in result.get("results", {}).items():
        n = result.get("n-samples", {}).get(task, {})
        hib = result.get("higher_is_better", {}).get(task, {})
        for key, value in metrics.items():
            metric, comma, filt = key.partition(",")
            # Metric keys are "metric,filter"; others (alias, name, sample_len) are bookkeeping.
            if not comma or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "filter": filt or None,
                    "value": value,
                    "stderr": stderr if isinstance(stderr, (int, float)) else None,
                    "n": n.get("effective"),
                    "n_original": n.get("original"),
                    "num_fewshot": result.get("n-shot", {}).get(task),
                    "higher_is_better": hib.get(metric),
                    "chance": chance(task) if metric in CHANCE_METRICS else None,
                }
            )
    return rows


def chance_from_configs(result: dict) -> Callable[[str], float | None]:
    """1/choices from the task config's literal choice list, else from KNOWN_CHOICES, else unknown."""
    configs = result.get("configs") or {}

    def chance(task: str) -> float | None:
        choices = (configs.get(task) or {}).get("doc_to_choice")
        if isinstance(choices, list) and choices:
            return 1.0 / len(choices)
        base = task.split("_")[0] if task.startswith("mmlu_") else task
        return 1.0 / KNOWN_CHOICES[base] if base in KNOWN_CHOICES else None

    return chance
