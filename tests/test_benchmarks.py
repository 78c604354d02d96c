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


def test_batch_order_benchmark_at_ci_size(tmp_path: Path):
    import batch_order

    out = tmp_path / "batch.json"
    record = batch_order.main(["--sequences", "20000", "--steps", "40", "--old-steps", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == record
    assert record["steps_per_epoch"] == 20000 // 32 and record["steps"] == 40
    for part in ("old_per_step", "indices", "indices_within_epoch", "batch", "batch_cached"):
        assert record[part]["median_ms"] > 0 and record[part]["max_ms"] >= record[part]["median_ms"]
    assert record["indices_epoch_start_ms"] > 0 and record["indices_amortised_ms"] > 0


def test_prepare_throughput_benchmark_at_ci_size(tmp_path: Path):
    import prepare_throughput

    # A corpus given in the work directory is used as it is (building the default one reads gensim's sample).
    docs = [f"document {i} é" + " word" * (i % 50) for i in range(300)]
    (tmp_path / "corpus_0.01mb.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    out = tmp_path / "prep.json"
    argv = ["--tokenizer", "bytes", "--mb", "0.01", "--workdir", str(tmp_path), "--out", str(out), "--in-process"]
    record = prepare_throughput.main(argv)
    assert json.loads(out.read_text()) == record
    assert record["encoder"] == "byte table" and record["documents"] == 300 and record["token_dtype"] == "uint16"
    assert record["bytes"] == sum(len(d.encode()) for d in docs)
    assert record["tokens"] == record["bytes"] + record["documents"]  # one id per byte, EOS after each document
    assert record["seconds"] > 0 and record["text_mb_per_s"] > 0 and record["peak_rss_mib"] > 0


def test_import_benchmark_at_ci_size(tmp_path: Path):
    import import_scale

    out = tmp_path / "import.json"
    assert import_scale.main(["--sizes", "200", "--sources", "lingua", "lingua-stdout", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["source"], r["entries"]) for r in rows] == [("lingua", 200), ("lingua-stdout", 200)]
    assert all(r["metrics_rows"] == r["metrics_lines_written"] == 200 and r["cpu_s"] > 0 for r in rows)
