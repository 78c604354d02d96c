"""Report sanity checks: every rule in RULES fires on a run built to trigger it and stays quiet otherwise."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.report import checks
from pipeline.report.checks import RULES, SEVERITY_ORDER, run_checks
from pipeline.report.loader import METRIC_COLUMNS, VALIDATION_COLUMNS, Run


# --------------------------------------------------------------------------- helpers
def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """A table shaped like the loader's: every expected column present and numeric, sorted by step."""
    df = pd.DataFrame(rows)
    for col in columns:
        if col not in df:
            df[col] = pd.Series(dtype="float64")
        df[col] = pd.to_numeric(df[col], errors="coerce")
    if len(df):
        df = df.sort_values("step").reset_index(drop=True)
    return df


def metric_rows(steps, loss=lambda s: 5.0 - s / 1000) -> list[dict]:
    return [
        {
            "step": s,
            "epoch": s / 1000,
            "loss": loss(s),
            "grad_norm": 1.0,
            "lr": 1e-3,
            "tokens": s * 512,
            "tokens_per_s": 1000.0,
            "step_time_s": 0.5,
            "data_time_s": 0.01,
            "mem_peak_gib": 0.1,
        }
        for s in steps
    ]


def val_rows(pairs) -> list[dict]:
    return [
        {
            "step": s,
            "epoch": s / 1000,
            "val_loss": v,
            "val_perplexity": math.exp(v) if math.isfinite(v) else v,
            "val_accuracy": 0.1,
            "val_tokens": 1024,
        }
        for s, v in pairs
    ]


def make_run(
    *,
    steps: int | None = 100,
    metrics: list[dict] | None = None,
    validation: list[dict] | None = None,
    done: dict | None = None,
    perplexity: dict | None = None,
    provenance: dict | None = None,
    prepared: dict | None = None,
    problems: list[str] | None = None,
    config: dict | None = None,
) -> Run:
    """A healthy, finished 100-step run unless told otherwise."""
    if config is None:
        config = {"name": "t", "model": {}, "train": {"steps": steps}}
    if metrics is None:
        metrics = metric_rows(range(10, (steps or 100) + 1, 10))
    if validation is None:
        validation = val_rows([(0, 6.0), (50, 4.0), ((steps or 100), 3.0)])
    return Run(
        name="t",
        root=Path("runs/t"),
        config=config,
        metrics=frame(metrics, METRIC_COLUMNS),
        validation=frame(validation, VALIDATION_COLUMNS),
        done=done,
        perplexity=perplexity,
        provenance=provenance,
        prepared=prepared,
        problems=problems or [],
    )


def completed(steps: int = 100) -> dict:
    return {"status": "completed", "steps_done": steps, "steps_planned": steps}


def healthy() -> Run:
    return make_run(
        done=completed(),
        prepared={"vocab_size": 2048},
        perplexity={"step": 100, "perplexity": 30.0, "nan_count": 0, "inf_count": 0},
        provenance={"git": {"commit": "0123456789abcdef", "dirty": False, "diff_sha256": None}},
    )


def with_harness(rows: list[dict]) -> Run:
    from pipeline.report.loader import TASK_COLUMNS

    run = healthy()
    run.harness = pd.DataFrame(
        [{"filter": "none", "higher_is_better": True, "num_fewshot": 0, **r} for r in rows], columns=TASK_COLUMNS
    )
    return run


def task_row(task="cloze", metric="acc", value=0.25, stderr=0.02, chance=0.25, n=300, n_original=300) -> dict:
    return {
        "task": task,
        "metric": metric,
        "value": value,
        "stderr": stderr,
        "chance": chance,
        "n": n,
        "n_original": n_original,
    }


def imported(plan: dict | None = None, warnings: list[str] | None = None, segments: list[dict] | None = None) -> Run:
    """A finished run as `make import` leaves it (plan.json from the source, import.json, segments)."""
    run = make_run(done={"status": "unknown", "steps_done": 100, "steps_planned": None})
    run.plan, run.segments = plan or {"steps_planned": None}, segments or []
    run.imported = {"format": "lightning", "provides": ["train"], "warnings": warnings or []}
    return run


def segment(n: int, first: int, last: int) -> dict:
    return {
        "segment": n,
        "first_step": first,
        "last_step": last,
        "rows": (last - first) // 10 + 1,
        "tokens_per_s_median": 1000.0,
    }


FIXED = {
    "precision": "fp32",
    "attn_implementation": "sdpa",
    "finetune": "full",
    "grad_accum": 1,
    "batch_size": 8,
    "compile": False,
}


def variant(
    ms: float,
    gib: float,
    std_ms: float = 0.1,
    status: str = "ok",
    mismatches=(),
    errors=(),
    mem_kind: str = "cuda_peak_allocated",
    **settings,
) -> dict:
    if status != "ok":
        return {"status": status, "errors": list(errors), "requested": {**FIXED, **settings}}
    return {
        "status": "ok",
        "requested": {**FIXED, **settings},
        "step_time_median_s": ms / 1e3,
        "step_time_median_s_std": std_ms / 1e3,
        "mem_peak_allocated_gib": gib,
        "mismatches": list(mismatches),
        "errors": [],
        "mem_kind": mem_kind,
        "ok": 3,  # repeats that ran: Welch's test in within_noise needs them
    }


def with_bench(variants: dict, baseline: str | None = None) -> Run:
    run = healthy()
    run.bench = {"baseline": baseline or next(iter(variants)), "fixed": FIXED, "variants": variants}
    return run


def with_baseline(base_changes: dict | None = None, run_changes: dict | None = None) -> tuple[Run, Run]:
    """(run, baseline) for the rules that compare with `report.compare_to`: healthy runs, then changed."""
    base, run = healthy(), healthy()
    base.name = "base"
    for target, changes in ((base, base_changes or {}), (run, run_changes or {})):
        for key, value in changes.items():
            setattr(target, key, value)
    return run, base


def _args(built) -> tuple[Run, Run | None]:
    return built if isinstance(built, tuple) else (built, None)


# --------------------------------------------------------------------------- fire / no-fire tables
# rule name -> (run that triggers it, expected severity, substrings the message must contain)
def zero_generative(n=1324, value=0.0) -> Run:
    return with_harness([{**task_row(metric="exact_match", value=value, chance=None, n=n, n_original=n),
                          "output_type": "generate_until", "task": "math_algebra_hard"}])  # fmt: skip


def slow_interval(tps: float = 50.0, event: str | None = "evaluation") -> Run:
    rows = metric_rows(range(10, 101, 10))
    rows[5] = {**rows[5], "tokens_per_s": tps, **({"interval_event": event} if event else {})}
    return make_run(metrics=rows, done=completed())


def probed(mfu: float = 0.4, spread: float = 0.03, load: float | None = 0.02, dtype: str = "float32",
           precision: str = "fp32") -> Run:  # fmt: skip
    """A run whose metrics carry `mfu` against a peak probed with these window spread, host load and dtype."""
    rows = [{**row, "mfu": mfu} for row in metric_rows(range(10, 101, 10))]
    peak = {"flops_per_s": 1.0e11, "dtype": dtype, "window_spread": spread, "host_load_others": load}
    return make_run(metrics=rows, done=completed(), provenance={"device_peak": peak},
                    config={"name": "t", "model": {}, "train": {"steps": 100, "precision": precision}})  # fmt: skip


TORCH_TOO_OLD = (
    "The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver by "
    "downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx"
)


def trained_on(used: str = "cpu", requested: str = "auto", visible: bool = False, gpus_per_node: int = 0,
               reason: str | None = TORCH_TOO_OLD) -> Run:  # fmt: skip
    """A finished run whose provenance says which device training asked for and got, and what the machine
    showed (/dev/nvidia0 when `visible`). No GPU is involved: these are the records the train stage writes."""
    nvidia = {"visible": visible, "dev_nodes": ["nvidia0"] if visible else [], "nvidia_smi": visible,
              "cuda_visible_devices": None}  # fmt: skip
    train_device = {"requested": requested, "used": used, "world_size": 1, "nvidia_visible": visible, "nvidia": nvidia,
                    "cuda_usable": used.startswith("cuda"), "cuda_unusable_reason": reason}  # fmt: skip
    config = {"name": "t", "model": {}, "train": {"steps": 100, "device": requested},
              "hpc": {"nodes": 1, "gpus_per_node": gpus_per_node}}  # fmt: skip
    return make_run(done={**completed(), "device": used}, provenance={"train_device": train_device}, config=config)


NCCL_IB = {"network": "IB", "channels": {"NET/IB": 4, "P2P/CUMEM": 8}, "log": "runs/t/logs/nccl-rank0.log"}
NCCL_SOCKET = {"network": "Socket", "channels": {"NET/Socket": 4, "P2P/CUMEM": 8}, "log": "runs/t/logs/nccl-rank0.log"}


def nccl_run(nccl: dict | None = NCCL_SOCKET, nodes: int = 2) -> Run:
    """A finished multi-process run with what rank 0's NCCL log said (the parser is tested on NCCL's own lines
    in tests/test_gpu.py)."""
    config = {"name": "t", "model": {}, "train": {"steps": 100, "device": "cuda"},
              "hpc": {"nodes": nodes, "gpus_per_node": 4}}  # fmt: skip
    return make_run(done={**completed(), "device": "cuda:0", "world_size": 4 * nodes}, config=config,
                    provenance={"nccl": nccl} if nccl else {})  # fmt: skip


def with_import(**record) -> Run:
    run = imported(plan={"steps_planned": 100})
    run.imported = {"format": "lightning", "provides": ["train"], "warnings": [], **record}
    return run


def expecting(*lines: str, ppl: float = 30.0) -> Run:
    run = healthy()
    run.config = {**run.config, "expect": list(lines)}
    run.perplexity = {**run.perplexity.model_dump(), "perplexity": ppl}
    return run


def command_run(exit_code: int, tail: list[str]) -> Run:
    """A train.command run that stopped at step 20 of 40 with `exit_code` (train/DONE as external.py writes it)."""
    status = "completed" if exit_code == 0 else "failed"
    done = {"status": status, "steps_done": 20, "steps_planned": 40, "external": True, "exit_code": exit_code,
            "stderr_tail": tail}  # fmt: skip
    config = {"name": "t", "train": {"steps": 40, "command": "python t.py"}}
    return make_run(steps=40, metrics=metric_rows(range(2, 21, 2)), done=done, config=config)


FIRES = {
    "command_failed": [
        (
            lambda: command_run(3, ["Traceback (most recent call last):", "ValueError: loss exploded"]),
            "error",
            ["exited with code 3 after 20 of 40 steps", "last stderr line: `ValueError: loss exploded`"],
        ),
        (lambda: command_run(137, []), "error", ["code 137", "last stderr line: —"]),
    ],
    "device_fallback": [
        (lambda: trained_on(requested="cuda"), "error", ["ran on cpu although train.device is cuda", "too old"]),
        (lambda: trained_on(gpus_per_node=1), "error", ["asked for 1 GPU(s) per node"]),
        (lambda: trained_on(visible=True), "error", ["NVIDIA devices were visible (/dev/nvidia0, nvidia-smi on PATH)"]),
        (lambda: trained_on(requested="cpu", gpus_per_node=2, reason=None), "error", ["2 GPU(s)", "no reason was"]),
    ],
    "nccl_socket_fallback": [(nccl_run, "warning", ["NCCL used Socket between the 2 nodes", "4 channel(s)"])],
    "expectation_failed": [
        (lambda: expecting("eval.perplexity < 20"), "warning", ["eval.perplexity < 20 (measured 30, target 20)"]),
        (lambda: expecting("bench.step_ms[fast] < 5"), "warning", ["bench.step_ms[fast] < 5 (not measured)"]),
    ],
    "all_zero_generative": [(zero_generative, "error", ["math_algebra_hard (1,324 items)", "answer extraction"])],
    "several_runs_in_source": [
        (
            lambda: with_import(runs=[{"name": "version_0", "read": False}, {"name": "version_7", "read": True}]),
            "warning",
            ["2 different runs (version_0, version_7)", "of version_7 only"],
        )
    ],
    "metrics_not_imported": [
        (lambda: with_import(not_carried={"train/weird": 3}), "warning", ["train/weird (3 rows)"])
    ],
    "suspect_peak": [
        (lambda: probed(mfu=0.9), "warning", ["median MFU 90.0% is above 75%", "1.000e+11 FLOP/s, float32"]),
        (lambda: probed(spread=0.4), "warning", ["timing windows differ by 40%"]),
        (lambda: probed(load=0.6), "warning", ["other processes kept 60% of the host's cores busy"]),
        (lambda: probed(precision="bf16"), "warning", ["measured in float32 but training multiplied in bfloat16"]),
    ],
    "throughput_outlier": [
        (slow_interval, "info", ["step 60: 50 tokens/s (evaluation)", "10× below the median 1,000"]),
        (lambda: slow_interval(event=None), "info", ["the log says nothing about it"]),
    ],
    "run_incomplete": [
        (
            lambda: make_run(steps=1000, metrics=metric_rows(range(10, 101, 10))),
            "error",
            ["100 of 1000", "(10%)", "partial"],
        ),
        (
            lambda: make_run(steps=300, done={"status": "completed", "steps_done": 150, "steps_planned": 300}),
            "error",
            ["150 of 300", "(50%)"],
        ),
    ],
    "nonfinite_loss": [
        (
            lambda: make_run(metrics=metric_rows(range(10, 101, 10), loss=lambda s: math.nan if s >= 70 else 4.0)),
            "error",
            ["4 non-finite training loss", "first at step 70"],
        ),
        (
            lambda: make_run(validation=val_rows([(0, 6.0), (50, math.inf), (100, 3.0)])),
            "error",
            ["1 non-finite validation loss", "first at step 50"],
        ),
        (
            lambda: make_run(perplexity={"step": 100, "perplexity": 12.0, "nan_count": 2, "inf_count": 1}),
            "error",
            ["2 NaN and 1 Inf batches"],
        ),
        (
            lambda: make_run(done={"status": "stopped_nonfinite", "steps_done": 40, "steps_planned": 100}),
            "error",
            ["training stopped at step 40"],
        ),
    ],
    "loss_not_decreasing": [
        (
            lambda: make_run(validation=val_rows([(0, 5.0), (50, 4.8), (100, 4.99)])),
            "warning",
            ["validation loss", "5.0000", "4.9900", "-0.2%"],
        ),
        (lambda: make_run(validation=val_rows([(0, 5.0), (100, 5.5)])), "warning", ["5.0000", "5.5000", "+10.0%"]),
        (
            lambda: make_run(validation=[], metrics=metric_rows(range(10, 81, 10), loss=lambda s: 3.0 + s / 1000)),
            "warning",
            ["training loss", "3.0150", "3.0750"],
        ),
    ],
    "untrained_perplexity": [
        (
            lambda: make_run(perplexity={"step": 100, "perplexity": 1500.0}, prepared={"vocab_size": 2048}),
            "warning",
            ["1,500.0", "0.73x", "2,048"],
        ),
        (
            lambda: make_run(
                perplexity={"step": 100, "perplexity": 300.0},
                config={"name": "t", "model": {"vocab_size": 512}, "train": {"steps": 100}},
            ),
            "warning",
            ["300.0", "0.59x", "512"],
        ),
    ],
    "validation_rising": [
        (
            lambda: make_run(validation=val_rows([(0, 6.0), (50, 4.0), (100, 4.5)])),
            "warning",
            ["best 4.0000 (step 50)", "4.5000 at step 100"],
        ),
    ],
    "eval_not_final_checkpoint": [
        (
            lambda: make_run(steps=300, done=completed(300), perplexity={"step": 200, "perplexity": 10.0}),
            "warning",
            ["step-200 checkpoint", "reached step 300"],
        ),
        (
            lambda: setattr(r := with_harness([task_row()]), "harness_timing", {"step": 50}) or r,
            "warning",
            ["the harness was measured on the step-50 checkpoint", "reached step 100"],
        ),
    ],
    "resumed_run": [
        (
            lambda: imported(segments=[segment(1, 10, 80), segment(2, 60, 100)]),
            "info",
            ["2 segments", "segment 1: steps 10–80", "segment 2: steps 60–100", "21 step(s) were trained again"],
        ),
        (lambda: imported(segments=[segment(1, 10, 50), segment(2, 60, 100)]), "info", ["2 segments"]),
    ],
    "planned_steps_unknown": [
        (lambda: imported(), "warning", ["lightning", "100 steps logged", "STEPS=<n>"]),
    ],
    "import_warnings": [
        (
            lambda: imported(warnings=["metrics.jsonl:11: last line is cut off"]),
            "warning",
            ["metrics.jsonl:11: last line is cut off"],
        ),
    ],
    "damaged_files": [
        (
            lambda: make_run(
                problems=[
                    "train/metrics.jsonl: last line (truncated write?) is not valid JSON and was skipped",
                    "train/DONE: not valid JSON (Expecting value); ignored",
                ]
            ),
            "warning",
            ["train/metrics.jsonl: last line", "train/DONE"],
        ),
    ],
    "uncommitted_code": [
        (
            lambda: make_run(
                provenance={"git": {"commit": "0123456789abcdef", "dirty": True, "diff_sha256": "abcdef0123456789ffff"}}
            ),
            "info",
            ["abcdef012345", "0123456789", "uncommitted"],
        ),
    ],
    "at_chance": [
        (
            lambda: with_harness([task_row(value=0.254, stderr=0.004, chance=0.25)]),
            "warning",
            ["cloze acc 0.2540 vs chance 0.2500"],
        ),
        (
            lambda: with_harness([task_row(task="piqa", value=0.45, stderr=0.01, chance=0.5)]),
            "warning",
            ["piqa acc 0.4500 vs chance 0.5000"],
        ),
    ],
    "subset_only": [
        (
            lambda: with_harness(
                [task_row(n=100, n_original=10042), task_row(metric="acc_norm", n=100, n_original=10042)]
            ),
            "warning",
            ["cloze 100 of 10042"],
        ),
    ],
    "resolved_mismatch": [
        (
            lambda: with_bench(
                {
                    "bf16": variant(
                        100, 5.0, precision="bf16", mismatches=["precision: requested 'bf16', in effect 'fp32'"]
                    )
                }
            ),
            "error",
            ["bf16: precision: requested 'bf16', in effect 'fp32'"],
        ),
    ],
    "identical_measurements": [  # seed 004: FP32 and BF16 rows identical because precision was hard-coded
        (
            lambda: with_bench({"fp32": variant(139.2, 5.06), "bf16": variant(139.3, 5.06, precision="bf16")}),
            "warning",
            ["fp32 and bf16", "139.20 vs 139.30 ms", "5.060 vs 5.060 GiB"],
        ),
    ],
    "qlora_not_smaller": [
        (
            lambda: with_bench(
                {
                    "lora": variant(507, 11.0, finetune="lora", precision="bf16"),
                    "qlora": variant(615, 11.35, finetune="qlora", precision="bf16"),
                }
            ),
            "warning",
            ["qlora 11.350 GiB >= lora 11.000 GiB", "a quarter"],
        ),
    ],
    "bench_failures": [
        (
            lambda: with_bench(
                {
                    "a": variant(100, 5.0),
                    "b": variant(0, 0, status="failed", errors=["out of memory: CUDA out of memory"]),
                }
            ),
            "warning",
            ["b (out of memory: CUDA out of memory)"],
        ),
    ],
    "within_noise": [
        (
            lambda: with_bench(
                {"base": variant(100, 5.0, std_ms=2.0), "w4": variant(101.5, 5.0, std_ms=1.0, grad_accum=4)}
            ),
            "info",
            ["w4 101.50±1.00 ms vs 100.00±2.00 ms"],
        ),
    ],
    "no_op_change": [
        (
            lambda: with_baseline(
                {"config": {"train": {"lr": 1e-3}}, "done": {**completed(), "train_hash": "ab" * 32}},
                {"config": {"train": {"lr": 2e-3}}, "done": {**completed(), "train_hash": "ab" * 32}},
            ),
            "warning",
            ["1 config key(s) differ from base", "same train hash"],
        ),
        (
            lambda: with_baseline({"config": {"eval": {"batch_size": 2}}}, {"config": {"eval": {"batch_size": 4}}}),
            "warning",
            ["identical to 4 digits over 10 log steps"],
        ),
    ],
    "not_comparable": [
        (
            lambda: with_baseline(
                {"prepared": {"tokenizer": "bpe", "vocab_size": 300}},
                {"prepared": {"tokenizer": "bytes", "vocab_size": 257}},
            ),
            "warning",
            ["tokenizer (bpe (300 tokens) → bytes (257 tokens))", "compare numbers with care"],
        ),
    ],
}

# rule name -> runs on which it must stay quiet (the healthy run plus the edge just inside its threshold)
QUIET = {
    "command_failed": [healthy, lambda: command_run(0, [])],  # exited 0: incomplete is run_incomplete's to say
    "device_fallback": [
        healthy,
        trained_on,  # auto, nothing visible: the CPU was the right choice
        lambda: trained_on(requested="cpu"),
        lambda: trained_on(used="cuda:0", requested="cuda", visible=True, gpus_per_node=1, reason=None),
    ],
    "nccl_socket_fallback": [
        healthy,
        lambda: nccl_run(NCCL_IB),
        lambda: nccl_run(nodes=1),  # one node: sockets carry nothing between GPUs that matters
        lambda: nccl_run(None),
    ],
    "expectation_failed": [healthy, lambda: expecting("eval.perplexity < 40", "train.loss < 10 * 2")],
    "all_zero_generative": [healthy, lambda: zero_generative(n=1), lambda: zero_generative(value=0.01)],
    "several_runs_in_source": [healthy, lambda: with_import(runs=[{"name": "version_0", "read": True}])],
    "metrics_not_imported": [healthy, lambda: with_import(not_carried={})],
    "throughput_outlier": [healthy, lambda: slow_interval(tps=101.0)],
    "suspect_peak": [
        healthy,
        probed,
        lambda: probed(mfu=0.74, spread=0.14, load=0.24),
        lambda: probed(load=None),
        lambda: probed(dtype="bfloat16", precision="bf16"),
    ],  # fmt: skip
    "run_incomplete": [
        healthy,
        lambda: make_run(
            steps=None, config={"name": "t", "train": {"epochs": 1}}, metrics=metric_rows(range(10, 51, 10))
        ),
        lambda: make_run(
            steps=300,
            done={"status": "early_stopped", "steps_done": 150, "steps_planned": 300, "status_why": "early stopping"},
        ),  # train.early_stopping ended it: the status line says early-stopped and why
    ],  # nothing planned to compare with
    "nonfinite_loss": [
        healthy,
        lambda: make_run(perplexity={"step": 100, "perplexity": 12.0, "nan_count": 0, "inf_count": 0}),
    ],
    "loss_not_decreasing": [
        healthy,
        lambda: make_run(validation=val_rows([(0, 5.0), (100, 4.9)])),  # -2% is a drop
        lambda: make_run(validation=[], metrics=metric_rows([10, 20, 30])),
    ],  # too few points
    "untrained_perplexity": [
        healthy,
        lambda: make_run(perplexity={"step": 100, "perplexity": 1000.0}, prepared={"vocab_size": 2048}),  # 0.49x < 0.5x
        lambda: make_run(perplexity={"step": 100, "perplexity": 1500.0}),
    ],  # vocab unknown
    "validation_rising": [
        healthy,
        lambda: make_run(validation=val_rows([(0, 6.0), (50, 4.0), (100, 4.07)])),  # within 2%
        lambda: make_run(validation=val_rows([(0, 6.0), (100, 7.0)])),
    ],  # fewer than 3 passes
    "eval_not_final_checkpoint": [healthy, lambda: make_run(perplexity=None)],
    "damaged_files": [healthy],
    "resumed_run": [healthy, lambda: imported(segments=[segment(1, 10, 100)])],
    "planned_steps_unknown": [healthy, lambda: imported(plan={"steps_planned": 100})],
    "import_warnings": [healthy, lambda: imported(plan={"steps_planned": 100})],
    "uncommitted_code": [
        healthy,
        lambda: make_run(provenance={"git": {"commit": None, "dirty": None, "diff_sha256": None}}),
        lambda: make_run(provenance=None),
    ],
    "at_chance": [
        healthy,
        lambda: with_harness([task_row(value=0.40, stderr=0.03)]),
        lambda: with_harness([task_row(metric="exact_match", value=0.0, chance=None)]),
    ],
    "subset_only": [healthy, lambda: with_harness([task_row(n=300, n_original=300)])],
    "resolved_mismatch": [
        healthy,
        lambda: with_bench({"a": variant(100, 5.0), "b": variant(80, 3.0, precision="bf16")}),
    ],
    "identical_measurements": [
        healthy,
        lambda: with_bench({"fp32": variant(139.0, 5.06), "bf16": variant(120.0, 3.10, precision="bf16")}),
        lambda: with_bench({"r1": variant(139.0, 5.06), "r2": variant(139.0, 5.06)}),
    ],  # same settings: expected
    "qlora_not_smaller": [
        healthy,
        lambda: with_bench(
            {
                "lora": variant(507, 53.88, finetune="lora", precision="bf16"),
                "qlora": variant(615, 11.35, finetune="qlora", precision="bf16"),
            }
        ),
    ],
    "bench_failures": [
        healthy,
        lambda: with_bench({"a": variant(100, 5.0), "fa2": variant(0, 0, status="skipped", errors=["no GPU"])}),
    ],
    "within_noise": [
        healthy,
        lambda: with_bench({"base": variant(100, 5.0, std_ms=1.0), "fast": variant(80, 5.0, std_ms=1.0, compile=True)}),
    ],
    "no_op_change": [
        healthy,  # no baseline: the rule does not run
        lambda: with_baseline(),  # same config: nothing was changed
        lambda: with_baseline(
            {"config": {"train": {"lr": 1e-3}}},
            {
                "config": {"train": {"lr": 2e-3}},
                "metrics": frame(metric_rows(range(10, 101, 10), loss=lambda s: 4.0 - s / 500), METRIC_COLUMNS),
            },
        ),
    ],
    "not_comparable": [healthy, lambda: with_baseline()],
}

RULES_BY_NAME = {rule.__name__: rule for rule in RULES}


def test_every_rule_has_a_firing_and_a_quiet_case():
    assert set(FIRES) == set(RULES_BY_NAME) == set(QUIET)


@pytest.mark.parametrize("name, index", [(n, i) for n, cases in FIRES.items() for i in range(len(cases))])
def test_rule_fires(name, index):
    build, severity, parts = FIRES[name][index]
    run, baseline = _args(build())
    finding = RULES_BY_NAME[name](run, baseline)
    assert finding is not None, f"{name} did not fire"
    assert finding.rule == name
    assert finding.severity == severity
    for part in parts:
        assert part in finding.message, f"{part!r} not in {finding.message!r}"
    # the full check list reports it too
    assert name in [f.rule for f in run_checks(run, baseline=baseline)]


@pytest.mark.parametrize("name, index", [(n, i) for n, cases in QUIET.items() for i in range(len(cases))])
def test_rule_stays_quiet(name, index):
    run, baseline = _args(QUIET[name][index]())
    assert RULES_BY_NAME[name](run, baseline) is None


def test_healthy_run_has_no_findings():
    run = healthy()
    assert run.status == "completed"
    assert run_checks(run) == []


# --------------------------------------------------------------------------- the seed scenario
def test_killed_run_with_100_of_1000_steps_is_partial_and_an_error():
    run = make_run(steps=1000, metrics=metric_rows(range(10, 101, 10)), done=None)
    assert run.steps_planned == 1000 and run.steps_done == 100
    assert run.status == "partial"
    findings = run_checks(run)
    incomplete = [f for f in findings if f.rule == "run_incomplete"]
    assert len(incomplete) == 1
    assert incomplete[0].severity == "error"
    assert "100 of 1000" in incomplete[0].message
    assert findings[0].severity == "error"


# --------------------------------------------------------------------------- Run.status
@pytest.mark.parametrize(
    "kwargs, status",
    [
        (dict(done=completed(100)), "completed"),
        (dict(done={"status": "completed", "steps_done": 120, "steps_planned": 100}), "completed"),
        (
            dict(
                steps=None,
                config={"name": "t", "train": {"epochs": 2}},
                done={"status": "completed", "steps_done": 930, "steps_planned": 930},
            ),
            "completed",
        ),
        (dict(done=None), "partial"),  # metrics but no DONE: killed
        (dict(done={"status": "completed", "steps_done": 60, "steps_planned": 100}), "partial"),
        (dict(done={"status": "interrupted", "steps_done": 60, "steps_planned": 100}), "partial"),
        (dict(done={"status": "stopped_nonfinite", "steps_done": 40, "steps_planned": 100}), "failed"),
        (dict(done={"status": "stopped_nonfinite", "steps_done": 100, "steps_planned": 100}), "failed"),
        (dict(metrics=[], validation=[], done=None), "not started"),
    ],
)
def test_run_status(kwargs, status):
    assert make_run(**kwargs).status == status


def test_steps_done_prefers_done_over_metrics():
    run = make_run(
        metrics=metric_rows([10, 20, 30]), done={"status": "completed", "steps_done": 35, "steps_planned": 35}
    )
    assert run.steps_done == 35 and run.steps_planned == 35
    assert make_run(metrics=metric_rows([10, 20, 30])).steps_done == 30


# --------------------------------------------------------------------------- ordering
def test_run_checks_orders_errors_before_warnings_before_info():
    run = make_run(
        steps=1000,
        metrics=metric_rows(range(10, 101, 10), loss=lambda s: math.nan if s == 100 else 4.0),
        validation=val_rows([(0, 6.0), (50, 4.0), (100, 4.5)]),
        perplexity={"step": 50, "perplexity": 1900.0},
        prepared={"vocab_size": 2048},
        problems=["train/metrics.jsonl: line 3 is not valid JSON and was skipped"],
        provenance={"git": {"commit": "abc", "dirty": True, "diff_sha256": "f" * 64}},
    )
    findings = run_checks(run)
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=SEVERITY_ORDER.get)
    assert severities[0] == "error" and severities[-1] == "info"
    assert {"error", "warning", "info"} == set(severities)
    rules = [f.rule for f in findings]
    assert rules[:2] == ["run_incomplete", "nonfinite_loss"]  # errors first, in RULES order
    assert rules[-1] == "uncommitted_code"
    assert set(rules) >= {"untrained_perplexity", "validation_rising", "eval_not_final_checkpoint", "damaged_files"}


def test_run_checks_with_explicit_rules_and_reverse_order():
    run = make_run(
        steps=1000,
        metrics=metric_rows(range(10, 101, 10)),
        provenance={"git": {"commit": "abc", "dirty": True, "diff_sha256": "0" * 64}},
    )
    findings = run_checks(run, rules=[checks.uncommitted_code, checks.damaged_files, checks.run_incomplete])
    assert [f.rule for f in findings] == ["run_incomplete", "uncommitted_code"]


def test_every_rule_carries_a_translatable_description():
    from pipeline.report.i18n import Msg, translations

    ja = translations("ja")
    for rule in RULES:
        assert isinstance(rule.description, Msg) and rule.description.translate(ja) != rule.description.msgid


def test_baseline_rules_run_only_with_a_baseline():
    from pipeline.report.checks import applicable

    names = [r.__name__ for r in applicable(RULES, None)]
    assert "no_op_change" not in names and "not_comparable" not in names
    assert len(applicable(RULES, healthy())) == len(RULES)


def test_readme_checks_table_lists_exactly_the_rules():
    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Checks\n", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \| (?:error|warning|info) \|", section, re.M)
    from pipeline.report.aggregate import AGGREGATE_RULES  # the seeds/sweep report's own table, same section

    names = [rule.__name__ for rule in RULES] + [rule.func.__name__ for rule in AGGREGATE_RULES]
    assert sorted(documented) == sorted(names)
