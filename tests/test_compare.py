"""Comparison with a baseline run: config diff, deltas, comparability guards, no-op detection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import TINY, write_experiment

from pipeline.report.compare import config_diff, delta_row

pytestmark = pytest.mark.slow


def test_config_diff_lists_only_changed_keys_with_ratios():
    a = {"name": "a", "train": {"lr": 1e-3, "steps": 100}, "data": {"seq_len": 128}, "report": {"title": "x"}}
    b = {"name": "b", "train": {"lr": 2e-3, "steps": 100}, "data": {"seq_len": 128}, "report": {"title": "y"}}
    assert config_diff(a, b) == [{"key": "train.lr", "old": 1e-3, "new": 2e-3, "ratio": 2.0}]


@pytest.mark.parametrize(
    "old, new, hib, noise, verdict",
    [
        (0.25, 0.26, True, 0.03, "within noise (±0.03)"),
        (0.25, 0.40, True, 0.03, "better"),
        # issue 16: without a noise estimate a difference is a number, never "better"/"worse"
        (5.0, 4.0, False, None, "noise unknown: no verdict"),
        (5.0, 6.0, False, None, "noise unknown: no verdict"),
        (3.0, 3.0, False, None, "same"),
    ],
)
def test_delta_verdicts_are_noise_aware(old, new, hib, noise, verdict):
    assert delta_row("m", old, new, hib, noise)["verdict"] == verdict


def test_delta_verdict_from_a_test_names_it_with_ci_and_p():
    from pipeline.report import stats

    same = stats.paired([1, 0, 1, 1] * 25, [1, 0, 1, 1] * 25)
    row = delta_row("acc", 0.75, 0.75, True, same)
    assert row["verdict"] == "same" and row["test"] == "McNemar (exact), paired" and row["p"] == 1.0
    gained = stats.paired([0] * 80 + [1] * 20, [1] * 30 + [0] * 50 + [1] * 20)
    row = delta_row("acc", 0.20, 0.50, True, gained)
    assert row["verdict"] == "better" and row["low"] > 0 and row["p"] < 0.001
    noisy = stats.paired([0] * 90 + [1] * 10, [1] * 1 + [0] * 89 + [1] * 10)
    assert delta_row("acc", 0.10, 0.11, True, noisy)["verdict"].startswith("within noise (p = ")


def test_expectation_language_is_not_python():
    from pipeline.report import expect

    assert [r.key for r in expect.refs("bench.peak_mem_gib[grad-ckpt] < bench.peak_mem_gib[no-ckpt]")] == [
        "grad-ckpt",
        "no-ckpt",
    ]
    for bad, why in (
        ("__import__('os').system('true') < 1", "not allowed"),
        ("eval.perplexty < 3", "did you mean 'eval.perplexity'"),
        ("eval.perplexity", "must compare"),
        ("bench.step_ms < 3", "needs a [variant]"),
    ):
        with pytest.raises(expect.ExpectError, match=re.escape(why)):
            expect.refs(bad)
    out = expect.evaluate("1 < eval.perplexity <= 2 * 20", lambda ref: 30.0)
    assert [(o.text, o.measured, o.target, o.passed) for o in out] == [
        ("1 < eval.perplexity", 1.0, 30.0, True),
        ("eval.perplexity <= 2 * 20", 30.0, 40.0, True),
    ]


def test_unknown_expectation_metric_is_one_line_at_resolve_time():
    from pipeline.config.load import load_experiment
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"expect\[0\]: unknown metric 'val_los'; did you mean 'val_loss'\?"):
        load_experiment("smoke", ["expect=[val_los<3]"])


def run_pipeline(project: Path, name: str, monkeypatch) -> None:
    """All stages in this process (one import of torch/transformers instead of one per stage)."""
    from pipeline.config.load import load_experiment
    from pipeline.config.resolve import freeze, load_resolved
    from pipeline.data.prepare import run_prepare
    from pipeline.evaluate.stage import run_eval
    from pipeline.provenance import record_stage
    from pipeline.report.render import render
    from pipeline.rundir import RunDir

    monkeypatch.chdir(project)
    run = RunDir(Path("runs") / name)
    freeze(load_experiment(name), run)
    cfg = load_resolved(run.root)
    from pipeline.train.loop import run_train

    for stage, func in (("prepare", run_prepare), ("train", run_train), ("eval", run_eval)):
        func(cfg, run.root)
        record_stage(run, stage, "t0", "t1", 1.0, "h")
    render(run.root, cfg, Path("reports") / name)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cmp")
    write_experiment(root, "base", TINY)
    write_experiment(root, "faster", {"extends": "base", "train": {"lr": 1e-2}, "report": {"compare_to": "base"}})
    # A change that cannot affect training (seed 000 credited such a change with a result).
    write_experiment(
        root, "noop", {"extends": "base", "eval": {"perplexity": {"batch_size": 2}}, "report": {"compare_to": "base"}}
    )
    write_experiment(
        root,
        "bytes",
        {
            "extends": "base",
            "data": {"tokenizer": {"type": "bytes"}},
            "report": {"compare_to": "base"},
            "expect": ["eval.bits_per_byte < 100", "eval.perplexity < 1"],
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        for name in ("base", "faster", "noop", "bytes"):
            run_pipeline(root, name, mp)
    return root


def test_comparison_section_shows_diff_and_deltas(project: Path):
    text = (project / "reports" / "faster" / "report.md").read_text()
    assert "## Comparison with `base`" in text
    assert "| train.lr" in text and "| 0.003" in text and "| 0.01" in text
    assert "final validation loss" in text and "held-out perplexity" in text
    assert (project / "reports" / "faster" / "compare_loss.png").is_file()
    assert "no_op_change" not in text and "not_comparable" not in text


def test_no_op_change_is_flagged(project: Path):
    text = (project / "reports" / "noop" / "report.md").read_text()
    assert "`no_op_change`" in text and "same train hash" in text and "| eval.perplexity.batch_size" in text
    # a bit-identical rerun: nothing is "better" or "worse" (equal, within noise, or no verdict)
    table = text.split("## Comparison with")[1].split("## Checks")[0]
    assert "| better" not in table and "| worse" not in table


def test_held_out_rows_name_their_test(project: Path):
    assert (project / "runs" / "faster" / "eval" / "perplexity_items.jsonl").is_file()
    text = (project / "reports" / "faster" / "report.md").read_text()
    table = text.split("## Comparison with")[1].split("## Checks")[0]
    ppl = next(line for line in table.splitlines() if line.startswith("| held-out perplexity"))
    assert "paired bootstrap over sequences" in ppl  # same tokenizer, same sequences
    assert "| held-out bits per byte" in table and "95% CI low |" in table
    final = next(line for line in table.splitlines() if line.startswith("| final training loss"))
    assert "noise unknown: no verdict" in final


def _with_samples(name: str, correct: list[int]):
    import pandas as pd

    from pipeline.report.loader import TASK_COLUMNS, Run

    run = Run(name=name, root=Path(name), config={}, metrics=pd.DataFrame(), validation=pd.DataFrame())
    acc = sum(correct) / len(correct)
    run.harness = pd.DataFrame(
        [{"task": "cloze", "metric": "acc", "filter": "none", "value": acc, "stderr": 0.03, "higher_is_better": True}],
        columns=TASK_COLUMNS,
    )
    run.samples = {"cloze": [{"doc_id": i, "doc_hash": f"h{i}", "filter": "none", "acc": float(c)}
                             for i, c in enumerate(correct)]}  # fmt: skip
    return run


def test_lm_eval_deltas_on_the_same_items_use_mcnemar():
    from scipy import stats as sps

    from pipeline.report.compare import _harness_pairs

    base = _with_samples("a", [1] * 30 + [0] * 50 + [0] * 15 + [1] * 5)
    run = _with_samples("b", [1] * 30 + [0] * 50 + [1] * 15 + [0] * 5)
    (label, old, new, hib, test) = _harness_pairs(base, run)[0]
    assert test.test == "McNemar (exact)" and test.p == pytest.approx(sps.binomtest(15, 20).pvalue)
    row = delta_row(label, old, new, hib, test)
    assert row["test"] == "McNemar (exact), paired" and row["low"] > 0 and row["verdict"] == "better"
    other = _with_samples("c", [1] * 50 + [0] * 50)
    other.samples["cloze"] = [{**r, "doc_hash": "x" + r["doc_hash"]} for r in other.samples["cloze"]]
    (_, _, _, _, unpaired) = _harness_pairs(base, other)[0]
    assert unpaired.test == "unpaired (normal, stderr)"  # other items: the stderr rule, named as such


def test_bits_per_byte_across_tokenizers_has_the_right_sign(project: Path):
    from pipeline.report.compare import metric_rows
    from pipeline.report.loader import load_run

    base, run = load_run(project / "runs" / "base"), load_run(project / "runs" / "bytes")
    rows = {str(r["metric"]): r for r in metric_rows(base, run)}
    bpb = rows["held-out bits per byte"]
    assert bpb["delta"] == pytest.approx(run.perplexity.bits_per_byte - base.perplexity.bits_per_byte)
    assert (bpb["delta"] > 0) == (run.perplexity.bits_per_byte > base.perplexity.bits_per_byte)
    assert rows["held-out perplexity"]["delta"] is None  # never a perplexity ratio across tokenizers
    assert "tokenizers differ" in rows["held-out perplexity"]["verdict"]
    text = (project / "reports" / "bytes" / "report.md").read_text()
    assert "## Expectations" in text and "| eval.bits_per_byte < 100" in text and "✅ pass" in text
    assert "❌ fail" in text and "`expectation_failed`" in text


def test_hand_written_notes_survive_a_re_render(project: Path):
    from pipeline.config.resolve import load_resolved
    from pipeline.report.render import render

    notes = project / "reports" / "faster" / "notes.md"
    notes.write_text("Purpose: does a 3x learning rate help?\n\nNext: try 2x.\n")
    run_dir = project / "runs" / "faster"
    render(run_dir, load_resolved(run_dir), project / "reports" / "faster")
    text = (project / "reports" / "faster" / "report.md").read_text()
    assert "## Notes (written by hand)" in text and "Next: try 2x." in text and notes.is_file()


def test_different_tokenizer_is_not_comparable(project: Path):
    text = (project / "reports" / "bytes" / "report.md").read_text()
    assert "**Not directly comparable**" in text and "`not_comparable`" in text
    assert "| tokenizer" in text and "bpe (300 tokens)" in text and "bytes (257 tokens)" in text


def test_index_and_compare_tables(project: Path):
    from pipeline.errors import UserError
    from pipeline.report.index import build_compare, build_index

    index = build_index(project / "runs", project / "reports").read_text()
    for name in ("base", "faster", "noop", "bytes"):
        assert f"| {name} " in index and f"{name}/report.md" in index
    assert index.count("| completed ") == 4
    assert "| worst check" in index
    out = build_compare(["base", "faster", "bytes"], "lr-and-tokenizer", project / "runs", project / "reports")
    text = out.read_text()
    assert out == project / "reports" / "compare" / "lr-and-tokenizer.md"
    assert "### `faster` vs `base`" in text and "| train.lr" in text
    assert "Not directly comparable: tokenizer (bpe (300 tokens) → bytes (257 tokens))" in text
    assert (project / "reports" / "compare" / "lr-and-tokenizer.png").is_file()
    with pytest.raises(UserError, match="no run directory for missing"):
        build_compare(["base", "missing"], "x", project / "runs", project / "reports")


def _timed_run(tps: list[float], load: float | None):
    import pandas as pd

    from pipeline.report.loader import METRIC_COLUMNS, VALIDATION_COLUMNS, Run

    steps = list(range(10, 10 * len(tps) + 1, 10))
    metrics = pd.DataFrame({"step": steps, "tokens_per_s": tps, "loss": 3.0}).reindex(columns=METRIC_COLUMNS)
    metrics["step"], metrics["tokens_per_s"], metrics["loss"] = steps, tps, 3.0
    if load is not None:
        metrics["host_load"] = load
    return Run(name="t", root=Path("runs/t"), config={}, metrics=metrics,
               validation=pd.DataFrame(columns=VALIDATION_COLUMNS))  # fmt: skip


def test_throughput_under_different_host_load_is_not_comparable():
    from pipeline.report.compare import throughput_row

    fast, slow = [1000.0, 1010.0, 990.0, 1005.0, 995.0], [100.0, 101.0, 99.0, 100.5, 99.5]
    row = throughput_row(_timed_run(fast, 0.0), _timed_run(slow, 0.5))
    assert str(row["verdict"]) == "not comparable: host load differs (0% vs 50%)"
    same = throughput_row(_timed_run(fast, 0.02), _timed_run(slow, 0.03))  # same load: Welch's test decides
    assert str(same["verdict"]).startswith("worse") and row["delta"] == same["delta"]
    unknown = throughput_row(_timed_run(fast, None), _timed_run(slow, None))
    assert str(unknown["verdict"]) == "host load unknown: no verdict"
