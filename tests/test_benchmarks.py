"""Benchmark scripts run at CI size on CPU. They assert the records are complete, never a speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
sys.path.insert(0, str(REPO / "benchmarks"))


def test_eval_harness_benchmark_at_ci_size(tmp_path: Path):
    import eval_harness

    out = tmp_path / "bench.json"
    record = eval_harness.main(
        [
            "--scale",
            "0.002",
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--batch-size",
            "8",
            "--max-gen-toks",
            "16",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == record
    # item counts keep the seed's proportions: 10,042 / 1,838 / 3,610 scaled by 0.002
    assert record["items"] == {"bench_hellaswag": 20, "bench_piqa": 4, "bench_nq_open": 7}
    req = record["requests"]
    assert req["loglikelihood"]["requests"] == 20 * 4 + 4 * 2
    assert req["generate_until"]["requests"] == 7
    assert record["total_s"] >= req["loglikelihood"]["seconds"] + req["generate_until"]["seconds"] > 0
    tasks = {m["task"] for m in record["metrics"]}
    assert tasks == {"bench_hellaswag", "bench_piqa", "bench_nq_open"}
