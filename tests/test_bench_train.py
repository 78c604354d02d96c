"""benchmarks/train_throughput.py at CI size on CPU: the record is complete and self-consistent, never a speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, pipeline_env

from pipeline.train.flops import flops_per_token

pytestmark = pytest.mark.slow

LOOP_FIELDS = {
    "steps",
    "warmup",
    "tokens_per_step",
    "tokens_per_s",
    "step_time_median_s",
    "step_time_p10_s",
    "step_time_p90_s",
    "step_time_std_s",
    "achieved_flops_per_s",
    "mfu_measured_peak",
    "mfu_datasheet_peak",
    "peak_memory_gib",
    "first_loss",
    "last_loss",
    "step_times_s",
}


def test_train_throughput_benchmark_at_ci_size(tmp_path: Path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "train_throughput.py"),
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=pipeline_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["shape_name"] == "tiny" and r["precision"] == "fp32" and r["compile"] is False
    shape = r["shape"]
    assert (shape["dim"], shape["layers"], shape["heads"], shape["seq_len"], shape["batch_size"]) == (64, 2, 4, 128, 4)
    assert r["flops_per_token"] == flops_per_token(r["parameters"], shape["layers"], shape["dim"], shape["seq_len"])
    assert r["peak"]["measured"]["dtype"] == "float32" and r["peak"]["measured"]["flops_per_s"] > 0
    assert r["peak"]["datasheet_flops_per_s"] is None  # no datasheet for a CPU

    pipe, bare = r["pipeline"], r["bare"]
    for loop in (pipe, bare):
        assert set(loop) == LOOP_FIELDS
        assert loop["steps"] == len(loop["step_times_s"]) == 3 and loop["warmup"] == 1
        assert loop["tokens_per_step"] == 4 * 128
        assert loop["tokens_per_s"] > 0
        assert loop["tokens_per_s"] == pytest.approx(loop["tokens_per_step"] / loop["step_time_median_s"])
        assert loop["step_time_p10_s"] <= loop["step_time_median_s"] <= loop["step_time_p90_s"]
        assert loop["achieved_flops_per_s"] == pytest.approx(r["flops_per_token"] * loop["tokens_per_s"])
        # No upper bound: on a shared CPU a neighbour's load during the one-second peak measurement can
        # depress the peak, and with it inflate MFU, by several times.
        assert loop["mfu_measured_peak"] == pytest.approx(
            loop["achieved_flops_per_s"] / r["peak"]["measured"]["flops_per_s"]
        )
        assert loop["mfu_measured_peak"] > 0
        assert loop["mfu_datasheet_peak"] is None
        assert loop["peak_memory_gib"] > 0
        # random weights predict uniformly: the first loss is near ln(vocab)
        assert abs(loop["first_loss"] - math.log(r["vocab_size"])) < 0.5
        assert math.isfinite(loop["last_loss"])
    # same initial weights and first batch: both loops train the same model
    assert pipe["first_loss"] == pytest.approx(bare["first_loss"], rel=1e-5)
    assert math.isfinite(r["overhead_vs_bare"])
    assert r["overhead_vs_bare"] == pytest.approx(pipe["step_time_median_s"] / bare["step_time_median_s"] - 1)


def test_debug_3_shape_is_the_experiments():
    """The benchmark's debug_3 and experiments/debug_3.yaml must describe the same model (seed 000's 103M)."""
    import importlib.util

    from pipeline.config.load import load_experiment

    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shape, cfg = bench.SHAPES["debug_3"], load_experiment("debug_3", root=REPO / "experiments")
    model = bench.experiment(shape, "cpu", "bf16", True, 10).model
    assert model.model_dump() == cfg.model.model_dump()
    assert (shape["seq_len"], shape["batch_size"]) == (cfg.seq_len, cfg.train.batch_size)
