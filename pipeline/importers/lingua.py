"""Meta Lingua (facebookresearch/lingua) runs: a dump directory, or a job's stdout.

    <dump_dir>/config.yaml              the TrainArgs the run used (steps, data.*, model.*, optim.*, distributed.*)
    <dump_dir>/metrics.jsonl            one object per log step: global_step, loss/out, optim/grad_norm, optim/lr,
                                        optim/total_tokens, speed/wps, speed/FLOPS, speed/curr_iter_time,
                                        speed/data_load_time, memory/max_active_gib, memory/max_active_pct,
                                        memory/power_draw (mW), created_at
    <dump_dir>/metrics.eval.jsonl       one object per evaluation: global_step, created_at, lm-eval's results per task
    <dump_dir>/evals/<step>/results.json  lm-eval's result object of that evaluation (n-shot, n-samples, configs)
    slurm-<job>.out (any text file)     `step: 20  acc: 0  loss:  4.2865  grad: 1.44e+01  flops: 3.46e+14  wps: ...`

Lingua's `mem:` (stdout) and `memory/max_active_pct` are the peak share of device MEMORY in use, not
how busy the GPU was; they become `mem_peak_pct`. `speed/wps` is tokens per second per data-parallel rank.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pipeline.evaluate.results import chance_from_configs, normalise
from pipeline.importers.adapter import Adapter, Find, Rows
from pipeline.importers.common import (
    Imported,
    SourceError,
    extra_row,
    number,
    read_json,
    read_jsonl,
    read_yaml,
    required_step,
)

# Lingua key -> (our key, factor). Our keys and units: README, "train/metrics.jsonl".
METRICS = {
    "loss/out": ("loss", 1),
    "optim/grad_norm": ("grad_norm", 1),
    "optim/lr": ("lr", 1),
    "optim/total_tokens": ("tokens", 1),
    "speed/wps": ("tokens_per_s", 1),
    "speed/FLOPS": ("flops_per_s", 1),
    "speed/curr_iter_time": ("step_time_s", 1),
    "speed/data_load_time": ("data_time_s", 1),
    "memory/max_active_gib": ("mem_peak_gib", 1),
    "memory/max_active_pct": ("mem_peak_pct", 1),
    "memory/max_reserved_gib": ("mem_reserved_gib", 1),
    "memory/power_draw": ("power_w", 1e-3),
}
# The stdout step line: same quantities, fewer digits.
STDOUT = {
    "loss": "loss",
    "grad": "grad_norm",
    "flops": "flops_per_s",
    "wps": "tokens_per_s",
    "iter": "step_time_s",
    "data": "data_time_s",
    "lr": "lr",
    "mem": "mem_peak_pct",
    "pow": "power_w",
}
STEP_LINE = re.compile(r"\bstep: (\d+)\s+acc: (\d+)\s+(.*)$")
# What else the job's stdout says happened (train.log next to the dump, or the stdout file given as SRC).
EVENTS = {
    "launch": re.compile(r"Starting job: (.*)$"),
    "reload": re.compile(r"(Reloading (?:train state|model|checkpoint|from)|Loading from:|Train state reloaded)(.*)$"),
    "checkpoint": re.compile(r"Saving to: (.*)$"),
    "evaluation": re.compile(r"All evaluation results: (.*)$"),
    "error": re.compile(
        r"(exited with code [1-9]\d*|Traceback \(most recent call last\)|CUDA out of memory|\w+Error: .*)"
    ),
}
STDOUT_NAMES = ("train.log", "stdout.log", "*.out", "*.log")
BOOKKEEPING = ("global_step", "acc_step", "created_at")
PAIR = re.compile(r"(\w+):\s*(\S+?)\s*(%|W)?(?=\s+\w+:|\s*$)")


def _metrics_row(obj: dict, where: str) -> dict | None:
    row = {"step": required_step(obj, "global_step", where)}
    if obj.get("acc_step", 0) not in (0, None):
        return None  # a gradient-accumulation micro-step (logging.acc_freq): not an optimizer step
    for key, (ours, factor) in METRICS.items():
        value = number(obj.get(key), where, key)
        row[ours] = value * factor if value is not None and factor != 1 else value
    rest = {k: v for k, v in obj.items() if k not in METRICS and k not in BOOKKEEPING}
    if rest:
        row["_extra"] = rest
    if row["grad_norm"] == -1.0:  # Lingua's placeholder on steps without an optimizer update
        row["grad_norm"] = None
    row["time_utc"] = obj.get("created_at")
    return row


def _stdout_row(record: dict, where: str) -> dict:
    row = {"step": record["step"]}
    for key, ours in STDOUT.items():
        row[ours] = number(record["stdout"].get(key), where, key)
    return row


def stdout_events(path: Path) -> list[dict]:
    """Launches, reloads, checkpoints, evaluations and errors, each with its line and the step logged before it."""
    events, after = [], None
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if match := STEP_LINE.search(line):
            after = int(match.group(1))
            continue
        for kind, pattern in EVENTS.items():
            if found := pattern.search(line):
                text = found.group(0)
                event = {"kind": kind, "line": lineno, "after_step": after, "text": text[:200]}
                if kind == "evaluation":
                    event["results"] = found.group(1)
                events.append(event)
                break
    return events


def mark_intervals(rows: list[dict], events: list[dict]) -> None:
    """A logged interval that contains an evaluation, a checkpoint or a (re)launch says so (`interval_event`):
    its throughput is that pause, not the run's speed."""
    index = {}
    for i, row in enumerate(rows):
        index[row["step"]] = i
    for event in events:
        if event["kind"] not in ("evaluation", "checkpoint", "launch", "reload"):
            continue
        i = index.get(event["after_step"], -1) + 1 if event["after_step"] is not None else 0
        if i < len(rows):
            kinds = rows[i].get("interval_event")
            if not kinds or event["kind"] not in kinds.split(", "):
                rows[i]["interval_event"] = f"{kinds}, {event['kind']}" if kinds else event["kind"]


def stdout_records(path: Path) -> list[tuple[str, dict]]:
    """The job's step lines, as {"step": n, "stdout": {name: text}} records."""
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        match = STEP_LINE.search(line)
        if not match or match.group(2) != "0":
            continue
        fields = {k: v for k, v, _unit in PAIR.findall(match.group(3))}
        if "loss" not in fields:
            raise SourceError(
                f"{path}:{lineno}: step line without 'loss:'; expected Lingua's format "
                f"'step: N  acc: 0  loss: X  grad: … wps: …'"
            )
        records.append((f"{path}:{lineno}", {"step": int(match.group(1)), "stdout": fields}))
    if not records and not any(e["kind"] == "launch" for e in stdout_events(path)):
        raise SourceError(f"{path}: no Lingua step lines ('step: N  acc: 0  loss: …'); is this the job's stdout?")
    return records


def eval_series(results: dict) -> dict:
    """One evaluation's scores as series: lm-eval's `{task: {"acc,none": v, "acc_stderr,none": se}}` (a line of
    metrics.eval.jsonl, or stdout's `All evaluation results:`) -> `{"task/acc": v}`, stderrs left out."""
    return {
        f"{task}/{key.split(',')[0]}": v
        for task, metrics in results.items()
        if isinstance(metrics, dict)
        for key, v in metrics.items()
        if "," in key and "_stderr" not in key
    }


def read_evals(dump: Path, imp: Imported) -> None:
    """The newest evaluation: its lm-eval result object when evals/<step>/results.json exists, else the line."""
    path = dump / "metrics.eval.jsonl"
    if not path.is_file():
        return
    lines = read_jsonl(path, imp.warnings)
    lineno, last = lines[-1]
    step = required_step(last, "global_step", f"{path}:{lineno}")
    results_file = dump / "evals" / f"{step:010d}" / "results.json"
    if results_file.is_file():
        result = read_json(results_file)
        if not isinstance(result.get("results"), dict):
            raise SourceError(f"{results_file}: no 'results' object (expected lm-eval's result format)")
        imp.files.append(results_file)
    else:
        result = {"results": {k: v for k, v in last.items() if isinstance(v, dict)}}
    for n, obj in lines:  # every evaluation's numbers, as series (the newest one's become task rows below)
        values = eval_series(obj)
        if row := extra_row(required_step(obj, "global_step", f"{path}:{n}"), "eval", imp.numbers(values)):
            imp.extra.append(row)
    imp.lm_eval = result
    imp.tasks = normalise(result, chance_from_configs(result))
    imp.eval_info = {
        "step": step,
        "time_utc": last.get("created_at"),
        "evaluations_recorded": len(lines),
        "source": results_file.name if results_file.is_file() else path.name,
    }
    imp.files.append(path)


def read_config(path: Path, imp: Imported) -> None:
    cfg = read_yaml(path)
    imp.files.append(path)
    imp.source_config = cfg
    model, data, optim = cfg.get("model") or {}, cfg.get("data") or {}, cfg.get("optim") or {}
    dist = cfg.get("distributed") or {}
    imp.steps_planned = cfg.get("steps")
    imp.model = {
        "dim": model.get("dim"),
        "layers": model.get("n_layers"),
        "heads": model.get("n_heads"),
        "kv_heads": model.get("n_kv_heads"),
        "vocab_size": model.get("vocab_size"),
        "max_seq_len": model.get("max_seqlen") or data.get("seq_len"),
    }
    precision = {"bf16": "bf16", "fp32": "fp32", "fp16": "fp16"}.get(str(dist.get("model_dtype")))
    imp.train = {
        "batch_size": data.get("batch_size"),
        "grad_accum": cfg.get("grad_acc_steps"),
        "lr": optim.get("lr"),
        "warmup_steps": optim.get("warmup"),
        "weight_decay": optim.get("weight_decay"),
        "clip": optim.get("clip"),
        "min_lr_ratio": optim.get("lr_min_ratio"),
        "seed": cfg.get("seed"),
        "precision": precision,
        "compile": dist.get("compile"),
        "log_every": (cfg.get("logging") or {}).get("freq"),
    }
    sources = data.get("sources") or {}
    imp.data = {
        "source": ", ".join(f"{k} (weight {v})" for k, v in sources.items()) or None,
        "tokenizer": (data.get("tokenizer") or {}).get("name"),
        "seq_len": data.get("seq_len"),
    }


class Lingua(Adapter):
    name = "lingua"
    description = "Meta Lingua: a dump_dir, its metrics.jsonl, or the job's stdout file (slurm-<job>.out)"
    find = Find("metrics.jsonl")

    @classmethod
    def detect(cls, src: Path) -> bool:
        if src.is_dir():
            return (src / "metrics.jsonl").is_file()
        if src.suffix == ".jsonl":
            return src.name.startswith("metrics")
        with open(src, encoding="utf-8", errors="replace") as fh:
            head = fh.read(1 << 20)
        return bool(STEP_LINE.search(head) or EVENTS["launch"].search(head) and "INFO" in head)

    def records(self, path: Path, imp: Imported) -> list[tuple[str, dict]]:
        if path.suffix == ".jsonl":
            if path.is_file() and path.stat().st_size == 0:
                imp.warnings.append(f"{path.name} is empty: the run logged no step")
                return []
            return [(f"{path}:{lineno}", obj) for lineno, obj in read_jsonl(path, imp.warnings)]
        return stdout_records(path)

    def rows(self, record: dict, where: str, imp: Imported) -> Rows:
        row = _stdout_row(record, where) if "stdout" in record else _metrics_row(record, where)
        rest = row.pop("_extra", None) if row is not None else None
        if rest and (extra := extra_row(row["step"], "train", imp.numbers(rest))):
            imp.extra.append(extra)
        return Rows(metrics=row)

    def finish(self, src: Path, files: list[Path], imp: Imported) -> None:
        dump = src if src.is_dir() else src.parent
        stdout = (
            files[0]
            if files[0].suffix != ".jsonl"
            else next((p for name in STDOUT_NAMES for p in sorted(dump.glob(name)) if p.is_file()), None)
        )
        if stdout is not None:
            imp.events = stdout_events(stdout)
            if stdout not in files:
                imp.files.append(stdout)
            mark_intervals(imp.metrics, imp.events)
            self._stdout_evals(stdout, imp)
        steps = [r["step"] for r in imp.metrics]
        imp.steps_done = max(steps, default=0)
        if not steps:
            launches = [e for e in imp.events if e["kind"] == "launch"]
            errors = [e for e in imp.events if e["kind"] == "error"]
            imp.status = "failed_before_first_step"
            imp.status_why = (
                f"{stdout.name if stdout else files[0].name}: {len(launches)} launch(es), no step logged"
                + (f"; last error (line {errors[-1]['line']}): {errors[-1]['text']}" if errors else "")
            )
        if (dump / "config.yaml").is_file():
            read_config(dump / "config.yaml", imp)
        else:
            imp.warnings.append("no config.yaml next to the logs: planned steps and hyperparameters are unknown")
        read_evals(dump, imp)

    def _stdout_evals(self, stdout: Path, imp: Imported) -> None:
        """`All evaluation results: {…}` lines: series for each, task rows from the last (when the dump has none)."""
        last = None
        for event in imp.events:
            text = event.pop("results", None)
            if text is None:
                continue
            try:
                results = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                imp.warnings.append(f"{stdout.name}:{event['line']}: evaluation results not readable, not imported")
                continue
            if not isinstance(results, dict):
                continue
            last = (event, results)
            dump_has_evals = (stdout.parent / "metrics.eval.jsonl").is_file()  # read_evals takes them from there
            if not dump_has_evals and (row := extra_row(event["after_step"], "eval", eval_series(results))):
                imp.extra.append(row)
        if last and not imp.tasks:
            event, results = last
            imp.lm_eval = {"results": results}
            imp.tasks = normalise(imp.lm_eval, chance_from_configs(imp.lm_eval))
            imp.eval_info = {"step": event["after_step"], "source": f"{stdout.name}:{event['line']}"}
