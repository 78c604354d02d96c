"""Comparison with a baseline run: config diff, deltas, comparability guards, no-op detection."""

from __future__ import annotations

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
        (5.0, 4.0, False, None, "better (noise unknown)"),
        (5.0, 6.0, False, None, "worse (noise unknown)"),
        (3.0, 3.0, False, None, "same"),
    ],
)
def test_delta_verdicts_are_noise_aware(old, new, hib, noise, verdict):
    assert delta_row("m", old, new, hib, noise)["verdict"] == verdict


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
        root, "bytes", {"extends": "base", "data": {"tokenizer": {"type": "bytes"}}, "report": {"compare_to": "base"}}
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
    out = build_compare(["base", "faster", "bytes"], "lr-and-tokenizer", project / "runs", project / "reports")
    text = out.read_text()
    assert out == project / "reports" / "compare" / "lr-and-tokenizer.md"
    assert "### `faster` vs `base`" in text and "| train.lr" in text
    assert "Not directly comparable: tokenizer (bpe (300 tokens) → bytes (257 tokens))" in text
    assert (project / "reports" / "compare" / "lr-and-tokenizer.png").is_file()
    with pytest.raises(UserError, match="no run directory for missing"):
        build_compare(["base", "missing"], "x", project / "runs", project / "reports")
