"""Benchmark scripts run at CI size on CPU. They assert the records are complete, never a speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.mark.slow
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
    assert record["seed"] == 0
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


def test_eval_harness_stops_with_one_line_when_its_default_device_is_absent(capsys):
    import eval_harness
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA works here: the default device is present")
    with pytest.raises(SystemExit) as stop:
        eval_harness.main([])  # the default --device cuda
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda: torch cannot use CUDA here")
    with pytest.raises(SystemExit) as stop:
        eval_harness.main(["--device", "no-such-device"])
    assert stop.value.code == 2 and "not a torch device" in capsys.readouterr().err


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_eval_harness_model_is_seeded(tmp_path: Path):
    import eval_harness
    from safetensors.torch import load_file

    weights = [
        load_file(eval_harness.build_model(tmp_path / name, "tiny", None, seed) / "model.safetensors")
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])  # same seed: the same model
    assert not all(weights[0][k].equal(weights[2][k]) for k in weights[0])  # another seed: another model


def test_scale_growth_exponent_recovers_known_powers():
    import scale

    sizes = [10_000, 100_000, 1_000_000]
    assert scale.growth_exponent(sizes, [2e-6 * n for n in sizes]) == pytest.approx(1.0)
    assert scale.growth_exponent(sizes, [3e-9 * n**2 for n in sizes]) == pytest.approx(2.0)
    assert scale.growth_exponent(sizes, [0.5, 0.5, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert scale.growth_exponent(sizes[:1], [1.0]) is None  # one size: no slope


@pytest.mark.slow  # two child processes
def test_scale_measures_a_part_in_its_own_process(tmp_path: Path, capsys):
    """The cheapest part end to end: each size measured in a child process, its peak RSS its own, one table."""
    import scale

    results = scale.main(["--parts", "batch_plan", "--sizes", "1e7,1e8", "--out", str(tmp_path / "s.json")])
    assert [r["size"] for r in results] == [10**7, 10**8] and all("error" not in r for r in results)
    for r in results:
        assert r["steps"] == min(1000, r["size"] // 2048 // 32) and r["time_s"] > 0
        assert r["peak_rss_mib"] >= r["base_rss_mib"] > 0
    assert json.loads((tmp_path / "s.json").read_text()) == results
    table = capsys.readouterr().out
    assert "| batch_plan | 10,000,000 | tokens (seq 2048) |" in table and "ms/step" in table
    with pytest.raises(SystemExit):
        scale.main(["--parts", "no_such_part"])


def test_scale_readme_rows_of_the_parts_measured_are_replaced_the_others_kept(tmp_path: Path):
    """`--parts report --readme` reruns one part: its rows are rewritten in PARTS order, another part's stay."""
    import scale

    def result(part, size, t):
        return {"part": part, "size": size, "time_s": t, "peak_rss_mib": 200.0, "base_rss_mib": 150.0}

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{scale.BEGIN}\n{scale.END}\n\nafter\n", encoding="utf-8")
    scale.update_readme(readme, [result("index", 10, 1.0), result("index", 100, 10.0), result("report", 10, 5.0)])
    scale.update_readme(readme, [result("report", 10_000, 2.0), result("report", 1_000_000, 200.0)])
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n\n") and text.endswith("\n\nafter\n")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| part ")]
    assert [(r.split("|")[1].strip(), r.split("|")[2].strip()) for r in rows] == [
        ("report", "10,000"),
        ("report", "1,000,000"),
        ("index", "10"),
        ("index", "100"),
    ]
    assert rows[0].split("|")[6].strip() == "1.00"  # 100× the lines, 100× the time: exponent 1
    assert rows[2].split("|")[6].strip() == "1.00" and "35 s / 3.0 GiB" in rows[1]  # issue #17's figure beside
