"""The bench stage for real on CPU: each variant in its own process, failures and skips recorded while the
sweep goes on, resolved settings read back from the model (bf16 autocast, LoRA, 4-bit QLoRA via
bitsandbytes' CPU kernels)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import TINY, pipeline_cmd, pipeline_env, write_experiment

pytestmark = pytest.mark.slow

BENCH = {
    "workload": "train",
    "seq_len": 16,
    "steps": 2,
    "warmup_steps": 1,
    "repeats": 2,
    "fixed": {
        "precision": "fp32",
        "attn_implementation": "sdpa",
        "finetune": "full",
        "lora_r": 4,
        "grad_accum": 1,
        "batch_size": 2,
        "compile": False,
        "num_workers": 0,
        "use_cache": True,
        "gradient_checkpointing": False,
    },
    "variants": [
        {"name": "fp32"},
        {"name": "broken"},
        {"name": "fa2", "attn_implementation": "flash_attention_2"},
        {"name": "bf16", "precision": "bf16"},
        {"name": "lora", "finetune": "lora"},
        {"name": "qlora", "finetune": "qlora"},
        {"name": "accum", "grad_accum": 2},
    ],
}


def sweep(project: Path, name: str, bench: dict, **env: str) -> Path:
    body = {**TINY, "stages": ["bench"], "model": {**TINY["model"], "vocab_size": 300}, "bench": bench}
    write_experiment(project, name, body)
    for args in (("resolve", name), ("bench", f"runs/{name}")):
        proc = subprocess.run(
            pipeline_cmd(*args), cwd=project, env=pipeline_env(**env), capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    return project / "runs" / name / "bench"


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    return sweep(tmp_path_factory.mktemp("bench"), "sweep", BENCH, LABNOTE_FAULT_VARIANT="broken")


def rows(bench_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (bench_dir / "results.jsonl").read_text().splitlines()]


def test_a_failing_variant_does_not_stop_the_sweep(bench_dir: Path):
    by = {}
    for r in rows(bench_dir):
        by.setdefault(r["variant"], []).append(r)
    assert list(by) == ["fp32", "broken", "fa2", "bf16", "lora", "qlora", "accum"]
    assert [r["status"] for r in by["broken"]] == ["failed", "failed"]
    assert "RuntimeError: injected fault" in by["broken"][0]["error"]
    assert [r["status"] for r in by["fa2"]] == ["skipped"]  # the reason does not change between repeats
    assert "flash_attention_2 needs a CUDA GPU" in by["fa2"][0]["reason"]
    for name in ("fp32", "bf16", "lora", "qlora", "accum"):
        assert [r["status"] for r in by[name]] == ["ok", "ok"], by[name]
        assert len(by[name][0]["step_times_s"]) == 2  # warm-up excluded


def test_resolved_settings_are_read_from_the_model(bench_dir: Path):
    summary = json.loads((bench_dir / "summary.json").read_text())["variants"]
    fp32, bf16, lora, qlora = (summary[n]["resolved"] for n in ("fp32", "bf16", "lora", "qlora"))
    assert fp32["precision"] == "fp32" and fp32["autocast_dtype"] is None
    assert bf16["precision"] == "bf16" and bf16["autocast_dtype"] == "bfloat16"
    assert set(bf16["param_dtypes"]) == {"float32"}  # autocast: weights stay fp32, compute is bf16
    assert lora["finetune"] == "lora" and 0 < lora["trainable_params"] < fp32["trainable_params"]
    assert qlora["finetune"] == "qlora" and qlora["linear_4bit_layers"] > 0 and "uint8" in qlora["param_dtypes"]
    assert all(summary[n]["mismatches"] == [] for n in ("fp32", "bf16", "lora", "qlora", "accum"))
    assert summary["accum"]["effective_batch"] == 2 * summary["fp32"]["effective_batch"]
    assert summary["broken"]["status"] == "failed" and summary["fa2"]["status"] == "skipped"


def test_report_section(bench_dir: Path, tmp_path: Path):
    from pipeline.config.resolve import load_resolved
    from pipeline.report.render import render

    run_dir = bench_dir.parent
    (report,) = render(run_dir, load_resolved(run_dir), tmp_path)
    text = report.read_text()
    assert re.search(r"\*\*Status: (✅|⚠️|❌) completed[^*]*\*\* — stages run: bench", text)
    assert "## Benchmark sweep" in text and "| fp32 (baseline)" in text
    assert "`bench_failures`" in text and "injected fault" in text
    assert "| fa2" in text and "skipped" in text
    assert "run_incomplete" not in text  # a sweep-only experiment has no training to be incomplete
    assert (tmp_path / "bench_time.png").is_file() and (tmp_path / "bench_memory.png").is_file()


def test_qlora_is_skipped_with_a_reason_without_bitsandbytes(tmp_path: Path):
    """bitsandbytes is installed here, so its absence is simulated: a sitecustomize blocks the import."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['bitsandbytes'] = None\n")
    bench = {**BENCH, "repeats": 1, "variants": [{"name": "qlora", "finetune": "qlora"}]}
    env = pipeline_env()
    out = sweep(tmp_path, "nobnb", bench, PYTHONPATH=f"{blocker}:{env['PYTHONPATH']}")
    (row,) = rows(out)
    assert row["status"] == "skipped" and "bitsandbytes" in row["reason"]


def test_collect_marks_an_array_task_without_result_as_failed(tmp_path: Path):
    from pipeline.bench.sweep import collect_bench_parts, part_path
    from pipeline.config.load import load_experiment
    from pipeline.config.resolve import freeze
    from pipeline.rundir import RunDir

    body = {
        **TINY,
        "stages": ["bench"],
        "model": {**TINY["model"], "vocab_size": 300},
        "bench": {**BENCH, "variants": [{"name": "a"}, {"name": "b"}]},
    }
    write_experiment(tmp_path, "arr", body)
    cfg = load_experiment("arr", root=tmp_path / "experiments")
    run = RunDir(tmp_path / "runs" / "arr")
    freeze(cfg, run)
    part_path(run, 0).parent.mkdir(parents=True)
    part_path(run, 0).write_text(json.dumps({"variant": "a", "repeat": 0, "status": "skipped", "reason": "r"}) + "\n")
    collect_bench_parts(cfg, run.root)
    summary = json.loads((run.root / "bench" / "summary.json").read_text())["variants"]
    assert summary["a"]["status"] == "skipped"
    assert summary["b"]["status"] == "failed" and "array task 1 wrote no result" in summary["b"]["errors"][0]
    assert (run.root / "bench" / "DONE").is_file()
