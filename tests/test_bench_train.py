"""benchmarks/train_throughput.py: its statistics on known data, and one CI-size run on CPU whose record must be
complete and self-consistent (never a speed)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, pipeline_env

spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_paired_overhead_of_a_constant_ratio_is_that_ratio_with_no_width():
    bare = np.array([0.010, 0.020, 0.015, 0.050])  # steps of very different lengths: pairing removes them
    o = bench.paired_overhead(bare * 1.02, bare)
    assert o["pairs"] == 4
    assert o["overhead"] == pytest.approx(0.02) and o["ci_low"] == pytest.approx(0.02) == o["ci_high"]


def test_paired_overhead_is_the_t_interval_of_the_log_ratios():
    from scipy import stats

    r = np.array([0.01, 0.03, -0.02, 0.05, 0.00, 0.02])
    bare = np.full(r.size, 0.1)
    o = bench.paired_overhead(bare * np.exp(r), bare)
    low, high = stats.t.interval(0.95, r.size - 1, loc=r.mean(), scale=stats.sem(r))
    assert o["mean_log_ratio"] == pytest.approx(r.mean())
    assert o["overhead"] == pytest.approx(math.expm1(r.mean()))
    assert (o["ci_low"], o["ci_high"]) == pytest.approx((math.expm1(low), math.expm1(high)))


def test_paired_overhead_interval_covers_the_true_ratio_under_noise():
    """Log-normal step noise shared by both loops of a pair, plus each loop's own: the 95% interval covers
    the true 3% in about 95 of 100 simulated benchmarks, and a bigger sample narrows it."""
    rng = np.random.default_rng(1)
    covered, widths = 0, {}
    for trial in range(100):
        n = 200
        load = rng.lognormal(0, 0.5, n)  # the machine's load at each pair: large, shared
        bare = 0.03 * load * rng.lognormal(0, 0.05, n)
        pipe = 0.03 * 1.03 * load * rng.lognormal(0, 0.05, n)
        o = bench.paired_overhead(pipe, bare)
        covered += o["ci_low"] <= 0.03 <= o["ci_high"]
        widths[trial] = o["ci_high"] - o["ci_low"]
    assert 88 <= covered <= 100
    big = bench.paired_overhead(0.03 * 1.03 * rng.lognormal(0, 0.07, 5000), 0.03 * rng.lognormal(0, 0.07, 5000))
    assert big["ci_high"] - big["ci_low"] < np.median(list(widths.values()))


def test_total_overhead_weighs_steps_by_their_time_and_repeats_its_interval():
    bare = np.array([0.01] * 9 + [0.10])
    pipe = np.array([0.01] * 9 + [0.13])  # only the one long step (a checkpoint) is slower
    o = bench.total_overhead(pipe, bare)
    assert o["overhead"] == pytest.approx(0.03 / 0.19)
    assert o["ci_low"] <= o["overhead"] <= o["ci_high"]
    assert bench.total_overhead(pipe, bare) == o  # seeded bootstrap: the same data give the same interval
    assert bench.paired_overhead(pipe, bare)["overhead"] == pytest.approx(math.expm1(math.log(1.3) / 10))


def test_step_kinds_follow_the_configured_intervals():
    from types import SimpleNamespace

    tc = SimpleNamespace(log_every=2, eval_every=4, checkpoint_every=6)
    assert bench.step_kinds(list(range(1, 10)), tc) == [
        "train", "log", "train", "validation", "train", "checkpoint", "train", "validation", "checkpoint",
    ]  # fmt: skip


def test_debug_3_shape_is_the_experiments():
    """The benchmark's debug_3 is experiments/debug_3.yaml's model and train sections (seed 000's 103M)."""
    from pipeline.config.load import load_experiment

    cfg, exp = (
        bench.experiment("debug_3", "cuda", "bf16", True, 100),
        load_experiment("debug_3", root=REPO / "experiments"),
    )
    assert cfg.model.model_dump() == exp.model.model_dump()
    assert cfg.train.model_dump() == exp.train.model_dump()
    assert (cfg.seq_len, cfg.data.tokenizer.type) == (exp.seq_len, "bytes")


@pytest.mark.slow
def test_train_throughput_benchmark_at_ci_size(tmp_path: Path):
    """A real run of both loops (tiny shape, 6 pairs, logging every step so step 1's loss is in the log)."""
    out = tmp_path / "bench.json"
    args = ["--shape", "tiny", "--device", "cpu", "--steps", "6", "--warmup", "2", "--peak-seconds", "0.2",
            "--set", "train.log_every=1 train.eval_every=4 train.checkpoint_every=5 train.eval_batches=1",
            "--out", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), *args], cwd=tmp_path,
                          env=pipeline_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["shape_name"] == "tiny" and r["precision"] == "fp32" and r["compile"] is False
    assert (r["shape"]["dim"], r["shape"]["layers"], r["shape"]["seq_len"], r["shape"]["batch_size"]) == (64, 2, 128, 4)
    assert r["measured_steps"] == [3, 4, 5, 6, 7, 8]  # after the 2 warm-up steps, in the stage's numbering
    assert r["step_kinds"] == ["log", "validation", "checkpoint", "log", "log", "checkpoint"]
    assert r["peak"]["datasheet_flops_per_s"] is None  # no datasheet for a CPU
    for name in ("pipeline", "bare"):
        loop = r[name]
        assert loop["steps"] == len(loop["step_times_s"]) == 6 and loop["tokens_per_step"] == 4 * 128
        assert loop["tokens_per_s"] == pytest.approx(loop["tokens_per_step"] / loop["step_time_mean_s"])
        assert loop["achieved_flops_per_s"] == pytest.approx(r["flops_per_token"] * loop["tokens_per_s"])
        assert loop["step_time_p10_s"] <= loop["step_time_median_s"] <= loop["step_time_p90_s"]
        assert loop["peak_memory_gib"] > 0
    # The record's overhead is the statistics above applied to its own step times.
    assert r["overhead"] == bench.paired_overhead(r["pipeline"]["step_times_s"], r["bare"]["step_times_s"])
    assert r["overhead_total"] == bench.total_overhead(r["pipeline"]["step_times_s"], r["bare"]["step_times_s"])
    assert set(r["by_kind"]) == {"log", "validation", "checkpoint"}
    # Same initial weights and first batch: both loops train the same model (random weights: loss ≈ ln(vocab)).
    first = r["first_step_loss"]
    assert first["pipeline"] == pytest.approx(first["bare"], rel=1e-5)
    assert abs(first["bare"] - math.log(r["vocab_size"])) < 0.5
    assert "paired (mean log-ratio, t), all steps" in proc.stdout and "95% CI" in proc.stdout
