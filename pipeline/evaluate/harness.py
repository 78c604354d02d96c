"""lm-evaluation-harness on a run's checkpoint, through lm-eval's own Python API (`simple_evaluate`).

Writes to `runs/<EXP>/eval/`:
- `lm_eval.json`: lm-eval's result object, unchanged;
- `tasks.jsonl`: one line per (task, metric): value, stderr, n, n_original, num_fewshot,
  higher_is_better, chance level;
- `harness_timing.json`: seconds and request counts per request type (loglikelihood,
  loglikelihood_rolling, generate_until) and in total;
- `samples/<task>.jsonl`: lm-eval's per-item results (`log_samples`): doc_id, doc/prompt/target hashes,
  filter, the responses and each metric's per-item value, so two runs on the same items can be compared with a
  paired test (pipeline/report/stats.py). The documents and prompts themselves are left out (their hashes stay).

The chance level of a multiple-choice task is measured, not assumed: the wrapper counts the
loglikelihood requests per document (one per choice) and averages 1/choices.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

from pipeline import records
from pipeline.config.schema import Experiment, HarnessTask
from pipeline.errors import DataError
from pipeline.evaluate.perplexity import pick_checkpoint
from pipeline.evaluate.results import normalise
from pipeline.rundir import RunDir
from pipeline.train.runtime import pick_device

log = logging.getLogger(__name__)
LOCAL_TASKS = Path(__file__).resolve().parents[1] / "tasks"
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
REQUEST_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")


def timed_lm_class():
    """HFLM whose request methods record wall time, request counts and choices per document."""
    from lm_eval.models.huggingface import HFLM

    class TimedHFLM(HFLM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.timing = {k: {"seconds": 0.0, "requests": 0} for k in REQUEST_TYPES}
            self.choices = defaultdict(lambda: defaultdict(int))  # task -> doc_id -> loglikelihood requests

        def _timed(self, kind, method, requests):
            t0 = time.perf_counter()
            out = method(requests)
            self.timing[kind]["seconds"] += time.perf_counter() - t0
            self.timing[kind]["requests"] += len(requests)
            return out

        def loglikelihood(self, requests, *args, **kwargs):
            for r in requests:
                self.choices[r.task_name][r.doc_id] += 1
            return self._timed(
                "loglikelihood", lambda q: super(TimedHFLM, self).loglikelihood(q, *args, **kwargs), requests
            )

        def loglikelihood_rolling(self, requests, *args, **kwargs):
            return self._timed(
                "loglikelihood_rolling",
                lambda q: super(TimedHFLM, self).loglikelihood_rolling(q, *args, **kwargs),
                requests,
            )

        def generate_until(self, requests, *args, **kwargs):
            return self._timed(
                "generate_until", lambda q: super(TimedHFLM, self).generate_until(q, *args, **kwargs), requests
            )

        def chance_level(self, task: str) -> float | None:
            docs = self.choices.get(task)
            if not docs:
                return None
            return sum(1.0 / n for n in docs.values()) / len(docs)

    return TimedHFLM


def is_local_task(name: str, include_path: list[Path]) -> bool:
    """A task defined by a YAML here (pipeline/tasks/) or in eval.harness.include_path, not one from the hub.

    The eval stage and `make data` both ask this, so what one treats as local the other never downloads."""
    return any(any(Path(d).rglob(f"{name}.yaml")) for d in [LOCAL_TASKS, *include_path])


def _sample_count(limit: float, n_docs: int) -> int:
    return min(n_docs, int(limit) if limit >= 1 else math.ceil(limit * n_docs))


def evaluate_tasks(
    lm, specs: list[HarnessTask], include_path: list[Path], seed: int = 1234, max_gen_toks: int | None = None
) -> dict:
    """One `simple_evaluate` call for all tasks, with per-task few-shot and limits.

    lm-eval 0.4.13 takes `num_fewshot` and `limit` only globally, and a task dict is read as a new task,
    not an override; so tasks are built first, few-shot is set on each Task, and per-task limits become
    `samples` (the first N documents of each task).
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = [s.task for s in specs]
    # Indexing lm-eval's ~15k bundled tasks takes ~14 s: skip it when every task is a local one.
    defaults = not all(is_local_task(n, include_path) for n in names)
    manager = TaskManager(include_path=[str(LOCAL_TASKS), *(str(p) for p in include_path)], include_defaults=defaults)
    try:
        loaded = manager.load(names)
    except Exception as exc:  # noqa: BLE001 - lm-eval and datasets raise many types for "not available"
        raise DataError(_task_error(exc, names)) from None
    tasks, children = loaded["tasks"], loaded.get("group_map", {})
    samples = {}
    for spec in specs:
        for name in [n for n in tasks if n == spec.task or n in children.get(spec.task, [])]:
            if spec.num_fewshot is not None:
                tasks[name].set_config(key="num_fewshot", value=spec.num_fewshot)
            if spec.limit is not None:
                samples[name] = list(range(_sample_count(spec.limit, len(tasks[name].eval_docs))))
    result = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks.values()),
        samples=samples or None,
        task_manager=manager,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
        bootstrap_iters=1000,
    )
    return json.loads(json.dumps(result, default=str))  # config.model_dtype is a torch.dtype


SAMPLE_DROPPED = ("doc", "arguments")  # large and identified by doc_hash / prompt_hash


def write_samples(run_root: Path, samples: dict) -> None:
    """`eval/samples/<task>.jsonl`, one line per item (and filter); earlier tasks' files are removed."""
    folder = Path(run_root) / "eval" / "samples"
    if folder.is_dir():
        for old in folder.glob("*.jsonl"):
            old.unlink()
    for task, items in samples.items():
        rows = [{k: v for k, v in item.items() if k not in SAMPLE_DROPPED} | {"task": task} for item in items]
        records.SAMPLES.write_rows_to(folder / f"{task}.jsonl", rows)


def _task_error(exc: Exception, tasks: list[str]) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return (
        f"eval.harness.tasks: cannot load {', '.join(tasks)} offline ({type(exc).__name__}: {text}); "
        f"run 'make data EXP=<exp>' on a machine with internet, or check the task names"
    )


def run_harness(cfg: Experiment, run_dir: Path, model_dir: Path | None = None, step: int | None = None) -> Path | None:
    """lm-eval on the run's checkpoint, or on `model_dir` (a train.command's own HF model folder, at `step`)."""
    hc = cfg.eval.harness
    if not hc.tasks:
        return None
    run = RunDir(run_dir)
    path = model_dir or pick_checkpoint(run, cfg.eval.checkpoint)
    device = pick_device(cfg.train.device)
    precision = hc.precision or cfg.train.precision
    lm = timed_lm_class()(
        pretrained=str(path),
        dtype=TORCH_DTYPES[precision],
        device=str(device),
        batch_size=hc.batch_size,
        max_batch_size=hc.max_batch_size,
        max_length=cfg.model.max_seq_len,
    )
    t0 = time.perf_counter()
    result = evaluate_tasks(lm, hc.specs(), hc.include_path, hc.seed, hc.max_gen_toks)
    total = time.perf_counter() - t0
    samples = result.pop("samples", None) or {}
    rows = normalise(result, lm.chance_level)
    records.LM_EVAL.write(run.root, result)
    write_samples(run.root, samples)
    records.TASKS.write_rows(run.root, rows)
    timing = {
        "checkpoint": path.name,
        "step": int(path.name) if step is None else step,
        "device": str(device),
        "dtype": TORCH_DTYPES[precision],
        "batch_size": hc.batch_size,
        "total_s": round(total, 3),
        "requests": {k: {"seconds": round(v["seconds"], 3), "requests": v["requests"]} for k, v in lm.timing.items()},
        "items": {r["task"]: r["n"] for r in rows},
    }
    records.HARNESS_TIMING.write(run.root, timing)
    log.info("harness: %d tasks in %.1f s", len(timing["items"]), total)
    return run.eval
