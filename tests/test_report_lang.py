"""The Japanese report template against the English one: identical numbers, Japanese headings, status words.

No training: the run directory is written by hand, every file shaped the way its stage writes it (config.yaml
through `to_yaml(load_experiment(...))`, bench/summary.json through the sweep's own `summarise`), so every
section of both templates renders. Both languages render the same run; the multiset of number strings must be
the same, because every number goes through the same filter with the same format spec in both templates.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import TINY, write_experiment

from pipeline.bench.sweep import summarise
from pipeline.config.load import load_experiment
from pipeline.config.resolve import config_hash, load_resolved, to_yaml
from pipeline.report.checks import run_checks
from pipeline.report.i18n import translations
from pipeline.report.loader import load_run
from pipeline.report.render import render

STEPS, LOG_EVERY, EVAL_EVERY = 120, 4, 40  # 30 metric lines (more than max_table_rows: the table is thinned)
TOKENS_PER_STEP = 4 * 32  # TINY: batch 4 × seq_len 32

BENCH = {
    "workload": "train",
    "seq_len": 32,
    "steps": 5,
    "warmup_steps": 2,
    "repeats": 2,
    "baseline": "fp32",
    "fixed": {
        "precision": "fp32",
        "attn_implementation": "sdpa",
        "finetune": "full",
        "lora_r": 8,
        "grad_accum": 1,
        "batch_size": 4,
        "compile": False,
        "num_workers": 0,
        "use_cache": True,
        "gradient_checkpointing": False,
    },
    "variants": [
        {"name": "fp32"},
        {"name": "bf16", "precision": "bf16"},
        {"name": "lora", "precision": "bf16", "finetune": "lora"},
        {"name": "torch-compile", "compile": True},  # resolved compile=False: a resolved_mismatch error
        {"name": "fa2", "attn_implementation": "flash_attention_2"},  # skipped
        {"name": "broken", "grad_accum": 2},
    ],  # failed
}

EXPERIMENT = {
    **TINY,
    "train": {**TINY["train"], "steps": STEPS, "log_every": LOG_EVERY, "eval_every": EVAL_EVERY},
    "eval": {
        **TINY["eval"],
        "harness": {
            "tasks": ["labnote_cloze", {"task": "labnote_nextword", "num_fewshot": 3, "limit": 100}, "labnote_rolling"],
            "batch_size": 32,
        },
    },
    "stages": ["prepare", "train", "eval", "bench"],
    "bench": BENCH,
    "report": {"title": "Tiny run with every section"},
}

EN_HEADINGS = [
    "## Summary",
    "## Checks",
    "## Environment",
    "## Model",
    "## Data",
    "## Hyperparameters",
    "## Training",
    "## Validation",
    "## Perplexity",
    "## lm-evaluation-harness",
    "## Benchmark sweep",
    "## Artifacts",
    "## Reproduce",
]
JA_HEADINGS = [
    "## 実行概要",
    "## チェック",
    "## 実行環境",
    "## モデル構成",
    "## データ",
    "## ハイパーパラメータ",
    "## 学習結果",
    "## 検証",
    "## 評価結果: パープレキシティ",
    "## 評価結果: lm-evaluation-harness",
    "## ベンチマーク結果",
    "## 保存ファイル",
    "## 再現手順",
]
STATUS = {
    "completed": ("✅ completed", "✅ 完了"),
    "partial": ("⚠️ partial", "⚠️ 部分的（未完了）"),
    "failed": ("❌ failed", "❌ 失敗"),
    "not started": ("⏸ not started", "⏸ 未実行"),
}

# A number as the filters print it: -1,234.5678 / +0.0123 / 1.23e-04 / 45% / 300. Digits inside identifiers
# (float32, sha256, p90, hex hashes) are not numbers; a comma is a thousands separator only before 3 digits.
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?%?(?![A-Za-z0-9_])")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)")


# --------------------------------------------------------------------------- the run directory
def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _lr(step: int, peak: float, warmup: int = 2, min_ratio: float = 0.1) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / (STEPS - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


FLOPS_PER_TOKEN = 4_718_592
PEAK = {
    "flops_per_s": 1.675e11,
    "dtype": "float32",
    "device": "cpu",
    "datasheet_flops_per_s": None,
    "datasheet_dtype": None,
}


def metric_line(step: int, scale: float = 1.0, peak_lr: float = 3e-3) -> dict:
    loss = 2.1 + scale * 3.6 * math.exp(-step / 45) + 0.03 * math.sin(step)
    tps = 9000.0 + 400.0 * math.sin(step / 7) + (0.0 if step > LOG_EVERY else -3500.0)  # first interval: start-up
    return {
        "step": step,
        "epoch": step / 100,
        "loss": loss,
        "grad_norm": 1.6 / (1 + step / 30),
        "lr": _lr(step, peak_lr),
        "tokens": step * TOKENS_PER_STEP,
        "tokens_per_s": tps,
        "step_time_s": TOKENS_PER_STEP / tps,
        "data_time_s": 0.00041,
        "mem_peak_gib": 0.4123 + step * 1e-5,
        "flops_per_token": FLOPS_PER_TOKEN,
        "flops_per_s": FLOPS_PER_TOKEN * tps,
        "mfu": FLOPS_PER_TOKEN * tps / PEAK["flops_per_s"],
        "mfu_datasheet": None,
        "time_utc": f"2026-11-23T10:{step // 60:02d}:{step % 60:02d}+00:00",
    }


def validation_line(step: int, scale: float = 1.0) -> dict:
    loss = 2.3 + scale * 3.45 * math.exp(-step / 50)
    return {
        "step": step,
        "epoch": step / 100,
        "val_loss": loss,
        "val_perplexity": math.exp(loss),
        "val_accuracy": 0.02 + 0.0015 * step,
        "val_tokens": 2 * TOKENS_PER_STEP,
        "time_utc": "2026-11-23T10:05:00+00:00",
    }


def bench_rows() -> list[dict]:
    """results.jsonl rows as a sweep writes them (two repeats per variant that ran)."""
    measured = {
        "fp32": (0.0357, 0.4220, "fp32", None, "full", 49_152),
        "bf16": (0.2821, 0.4189, "bf16", "bfloat16", "full", 49_152),
        "lora": (0.5192, 0.4667, "bf16", "bfloat16", "lora", 2_048),
        "torch-compile": (0.0402, 0.4301, "fp32", None, "full", 49_152),
    }
    rows = []
    for name, (t, mem, precision, autocast, finetune, trainable) in measured.items():
        for repeat, jitter in enumerate((0.97, 1.04)):
            step = t * jitter
            rows.append(
                {
                    "variant": name,
                    "repeat": repeat,
                    "status": "ok",
                    "step_times_s": [step] * 5,
                    "step_time_median_s": step,
                    "step_time_p90_s": step * 1.12,
                    "tokens_per_s": 128 / step,
                    "samples_per_s": 4 / step,
                    "effective_batch": 4,
                    "mem_peak_allocated_gib": mem * jitter**0.1,
                    "mem_peak_reserved_gib": None,
                    "energy_j": None,
                    "nvml_process_mem_gib": None,
                    "mem_kind": "cpu_peak_rss",
                    "resolved": {
                        "precision": precision,
                        "attn_implementation": "sdpa",
                        "finetune": finetune,
                        "compile": False,
                        "gradient_checkpointing": False,
                        "param_dtypes": {"float32": 12},
                        "autocast_dtype": autocast,
                        "linear_4bit_layers": 0,
                        "trainable_params": trainable,
                        "total_params": 49_152 + (2_048 if finetune == "lora" else 0),
                    },
                    "mismatches": ["compile: requested True, in effect False"] if name == "torch-compile" else [],
                }
            )
    rows.append(
        {
            "variant": "fa2",
            "repeat": 0,
            "status": "skipped",
            "reason": "flash_attention_2 needs a CUDA GPU; this process runs on cpu",
        }
    )
    rows += [
        {"variant": "broken", "repeat": r, "status": "failed", "error": "RuntimeError: injected fault"}
        for r in range(2)
    ]
    return rows


def harness_files(run: Path, step: int) -> None:
    tasks = [
        ("labnote_cloze", "acc", "none", 0.3133, 0.0268, 300, 300, 0, True, 0.25),
        ("labnote_cloze", "acc_norm", "none", 0.3267, 0.0271, 300, 300, 0, True, 0.25),
        ("labnote_nextword", "exact_match", "none", 0.04, 0.0197, 100, 200, 3, True, None),
        ("labnote_nextword", "exact_match", "first_word", 0.05, 0.0219, 100, 200, 3, True, None),
        ("labnote_rolling", "bits_per_byte", "none", 2.6931, None, 40, 40, 0, False, None),
        ("labnote_rolling", "word_perplexity", "none", 21456.789, None, 40, 40, 0, False, None),
    ]
    keys = [
        "task",
        "metric",
        "filter",
        "value",
        "stderr",
        "n",
        "n_original",
        "num_fewshot",
        "higher_is_better",
        "chance",
    ]
    _jsonl(run / "eval" / "tasks.jsonl", [dict(zip(keys, t)) for t in tasks])
    _json(
        run / "eval" / "harness_timing.json",
        {
            "checkpoint": f"{step:010d}",
            "step": step,
            "device": "cpu",
            "dtype": "float32",
            "batch_size": 32,
            "total_s": 5.872,
            "requests": {
                "loglikelihood": {"seconds": 2.413, "requests": 1200},
                "loglikelihood_rolling": {"seconds": 0.391, "requests": 40},
                "generate_until": {"seconds": 1.966, "requests": 100},
            },
            "items": {"labnote_cloze": 300, "labnote_nextword": 100, "labnote_rolling": 40},
        },
    )
    _json(run / "eval" / "lm_eval.json", {"results": {}, "n-shot": {"labnote_nextword": 3}})
    (run / "eval" / "DONE").write_text("")


def build_run(
    project: Path,
    name: str = "tiny",
    body: dict | None = None,
    *,
    scale: float = 1.0,
    commit: str = "0123456789abcdef0123456789abcdef01234567",
) -> Path:
    """A finished run of `body` (default EXPERIMENT) with every file the report reads."""
    body = body or EXPERIMENT
    write_experiment(project, name, body)
    cfg = load_experiment(name, root=project / "experiments")
    run = project / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    chash = config_hash(cfg)
    _json(
        run / "resolve.json", {"experiment": name, "extends": None, "overrides": ["train.seed=0"], "config_hash": chash}
    )
    peak_lr = cfg.train.lr

    # prepare
    _json(
        run / "prepared" / "stats.json",
        {
            "source": "builtin:kjv",
            "tokenizer": "bpe",
            "vocab_size": 300,
            "eos_token_id": 0,
            "token_dtype": "uint16",
            "splits": {
                "train": {"documents": 48, "characters": 212_345, "tokens": 81_234},
                "validation": {"documents": 6, "characters": 26_017, "tokens": 9_871},
                "test": {"documents": 6, "characters": 25_430, "tokens": 9_702},
            },
        },
    )
    (run / "prepared" / "DONE").write_text("")

    # train
    train_hash = "5f" * 32
    _json(
        run / "train" / "plan.json",
        {"steps_planned": STEPS, "steps_per_epoch": 100, "tokens_per_step": TOKENS_PER_STEP, "train_hash": train_hash},
    )
    _jsonl(
        run / "train" / "metrics.jsonl",
        [metric_line(s, scale, peak_lr) for s in range(LOG_EVERY, STEPS + 1, LOG_EVERY)],
    )
    _jsonl(run / "train" / "validation.jsonl", [validation_line(s, scale) for s in range(0, STEPS + 1, EVAL_EVERY)])
    _json(
        run / "train" / "DONE",
        {
            "status": "completed",
            "steps_done": STEPS,
            "steps_planned": STEPS,
            "steps_per_epoch": 100,
            "tokens_per_step": TOKENS_PER_STEP,
            "train_hash": train_hash,
            "resumed_from": None,
            "parameters": {"total": 29_312, "trainable": 29_312, "embedding": 9_600, "non_embedding": 19_712},
            "device": "cpu",
            "world_size": 1,
        },
    )
    for step in (100, STEPS):
        ckpt = run / "checkpoints" / f"{step:010d}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"\0" * 117_384)
        (ckpt / "train_state.pt").write_bytes(b"\0" * 235_121)

    # eval
    _json(
        run / "eval" / "perplexity.json",
        {
            "checkpoint": f"{STEPS:010d}",
            "step": STEPS,
            "split": "test",
            "batch_size": 4,
            "seq_len": 32,
            "batches": 4,
            "valid_batches": 4,
            "tokens": 508,
            "dtype": "float32",
            "device": "cpu",
            "loss": 2.487654321,
            "perplexity": math.exp(2.487654321),
            "accuracy": 0.2047,
            "nan_count": 0,
            "inf_count": 0,
            "eval_time_s": 0.21,
            "tokens_per_s": 2419.05,
        },
    )
    harness_files(run, STEPS)

    # bench: summary.json through the sweep's own summarise()
    rows = bench_rows()
    _jsonl(run / "bench" / "results.jsonl", rows)
    _json(run / "bench" / "summary.json", summarise(cfg, rows))
    _json(run / "bench" / "DONE", {"variants": len(BENCH["variants"]), "rows": len(rows)})

    # provenance: one entry per stage, as record_stage merges them
    stages = {}
    for stage, start, seconds in (
        ("prepare", "10:00:00", 3.2),
        ("train", "10:00:04", 41.734),
        ("eval", "10:00:47", 9.881),
        ("bench", "10:00:58", 63.05),
    ):
        stages[stage] = {
            "started_utc": f"2026-11-23T{start}+00:00",
            "ended_utc": "2026-11-23T10:02:00+00:00",
            "duration_s": seconds,
            "argv": ["-m", "pipeline", stage, f"runs/{name}"],
            "host": "node01",
            "job_id": "3849979",
            "git_commit": commit,
        }
    _json(
        run / "provenance.json",
        {
            "stages": stages,
            "experiment": name,
            "config_hash": chash,
            "config_file": "config.yaml",
            "host": "node01",
            "user": "tester",
            "platform": "Linux-6.1-x86_64",
            "git": {"commit": commit, "dirty": True, "diff_sha256": "9e" * 32},
            "versions": {"python": "3.11.7", "torch": "2.5.1+cpu", "transformers": "4.46.3", "datasets": "3.1.0"},
            "device": {"cpu": "AMD EPYC 7763", "cpu_count": 16, "gpus": [], "torch_threads": 16},
            "scheduler": {"scheduler": "slurm", "job_id": "3849979", "nodes": "node01"},
            "container": {"runtime": "apptainer", "image": "/shared/labnote.sif", "sha256": "ab12" * 16},
            "device_peak": PEAK,
            "env": {},
        },
    )
    return run


def make_state(run: Path, state: str) -> None:
    """Turn a finished run into a partial, failed or not-started one (as a kill or a NaN would leave it)."""
    if state == "completed":
        return
    for gone in ("eval", "bench", "checkpoints"):
        shutil.rmtree(run / gone, ignore_errors=True)
    prov = json.loads((run / "provenance.json").read_text())
    finished = ("prepare", "train") if state == "failed" else ("prepare",)  # a killed stage records nothing
    prov["stages"] = {k: v for k, v in prov["stages"].items() if k in finished}
    _json(run / "provenance.json", prov)
    if state == "not started":
        shutil.rmtree(run / "train")
        return
    half = STEPS // 2
    (run / "train" / "DONE").unlink()
    lines = [metric_line(s) for s in range(LOG_EVERY, half + 1, LOG_EVERY)]
    _jsonl(run / "train" / "validation.jsonl", [validation_line(s) for s in range(0, half, EVAL_EVERY)])
    if state == "failed":
        lines[-1]["loss"] = "nan"  # non-finite values are written as strings
        _json(
            run / "train" / "DONE",
            {
                "status": "stopped_nonfinite",
                "steps_done": half,
                "steps_planned": STEPS,
                "parameters": {"total": 29_312, "trainable": 29_312, "embedding": 9_600, "non_embedding": 19_712},
                "device": "cpu",
                "world_size": 1,
            },
        )
    _jsonl(run / "train" / "metrics.jsonl", lines)


# --------------------------------------------------------------------------- rendering helpers
def render_both(run: Path, out: Path) -> tuple[str, str]:
    cfg = load_resolved(run)
    texts = []
    for lang in ("en", "ja"):
        lang_cfg = cfg.model_copy(update={"report": cfg.report.model_copy(update={"language": lang})})
        (written,) = render(run, lang_cfg, out / lang)
        texts.append(written.read_text(encoding="utf-8"))
    return texts[0], texts[1]


def numbers(text: str) -> Counter:
    """Every number string in a report, except the generated timestamp's line (the only one with a timestamp)."""
    stamped = [line for line in text.splitlines() if TIMESTAMP.search(line)]
    assert len(stamped) == 1, stamped
    return Counter(NUMBER.findall("\n".join(line for line in text.splitlines() if line not in stamped)))


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("## ")]


def assert_same_numbers(en: str, ja: str) -> Counter:
    a, b = numbers(en), numbers(ja)
    assert a == b, f"only in en: {dict(a - b)}; only in ja: {dict(b - a)}"
    return a


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    return build_run(tmp_path)


# --------------------------------------------------------------------------- tests
def test_number_regex_reads_formatted_numbers_not_identifiers():
    text = "a -1,234.5678 b 1.23e-04 c 45% d (+0.0123) e float32 sha256 p90 `0a1b2c` 4-bit 7.3192 → 5.2495; 300, x"
    assert NUMBER.findall(text) == ["-1,234.5678", "1.23e-04", "45%", "+0.0123", "4", "7.3192", "5.2495", "300"]


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_every_section_renders_with_identical_numbers(full_run: Path, tmp_path: Path):
    en, ja = render_both(full_run, tmp_path / "reports")
    counted = assert_same_numbers(en, ja)
    assert sum(counted.values()) > 300  # the comparison is over the whole report, not a few lines

    run = load_run(full_run)
    assert run.status == "completed"
    for text in (en, ja):  # spot checks: the same strings, formatted once, in both languages
        assert f"{run.metrics['loss'].iloc[-1]:.4f}" in text
        assert f"{math.exp(2.487654321):,.2f}" in text
        assert "49,152" in text and "3.00e-03" in text and "21456.7890" in text and "3849979" in text
        assert "![loss](loss.png)" in text or "![損失](loss.ja.png)" in text  # plots of ja: loss.ja.png
        assert "4.7186e+06" in text and "1.675e+11" in text  # FLOPs per token, measured peak (MFU row)
    assert "100 of 200" in en and "100 / 200" in ja  # a subset: items evaluated of the task's items

    assert headings(en) == EN_HEADINGS
    assert headings(ja) == JA_HEADINGS


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_japanese_wording_and_translated_findings(full_run: Path, tmp_path: Path):
    en, ja = render_both(full_run, tmp_path / "reports")
    for heading in EN_HEADINGS + ["## Comparison with"]:
        assert heading not in ja
    for english in (
        "**Status:",
        "| Severity |",
        "| Host |",
        "| Steps |",
        "configured steps",
        "check(s) failed",
        "Not measured",
        "Resolved settings",
        "fixed conditions",
        "(baseline)",
        "| yes",
        "| no ",
    ):
        assert english not in ja, english
    assert (
        "**状態: ❌ 完了 — エラーのチェック 1 件** — 設定した全 120 ステップ中 120 ステップを実行。"
        "エラーのチェックが 1 件あり" in ja
    )
    assert "| 状態 | 完了、120 / 120 ステップ |" in ja
    assert "(#チェック)" in ja
    # The findings' messages are built in Python in English and translated when the report is rendered.
    findings = run_checks(load_run(full_run))
    assert {f.severity for f in findings} == {"error", "warning", "info"}
    labels = {"error": "❌ エラー", "warning": "⚠️ 警告", "info": "ℹ️ 情報"}
    for f in findings:
        assert f"| {labels[f.severity]} | `{f.rule}` | {f.message.translate(translations('ja'))} |" in ja
        assert f"| {f.message} |" in en and f"| {f.message} |" not in ja
    # Units and labels as Japanese reports write them; bench labels from Python are translated in the table.
    assert "秒" in ja and "tokens/s" in ja and "GiB" in ja and "ステップ" in ja
    assert "| fp32（ベースライン）" in ja and "固定条件のまま" in ja and "| 無効" in ja
    assert "| fa2" in ja and "スキップ" in ja and "| broken" in ja and "失敗" in ja and "injected fault" in ja
    assert "slurm ジョブ 3849979" in ja and "未コミットの変更あり" in ja


@pytest.mark.slow  # several seconds: kept out of make test-fast
@pytest.mark.parametrize("state", ["partial", "failed", "not started"])
def test_unfinished_runs_get_the_right_status_word(tmp_path: Path, state: str):
    run_dir = build_run(tmp_path)
    make_state(run_dir, state)
    assert load_run(run_dir).status == state
    en, ja = render_both(run_dir, tmp_path / "reports")
    assert_same_numbers(en, ja)
    en_word, ja_word = STATUS[state]
    assert f"**Status: {en_word}**" in en and f"**状態: {ja_word}**" in ja
    if state != "not started":
        done = STEPS // 2
        assert f"{done} of {STEPS} configured steps" in en
        assert f"全 {STEPS} ステップ中 {done} ステップを実行" in ja
        assert f"| 状態 | {ja_word.split(' ', 1)[1]}、{done} / {STEPS} ステップ |" in ja
    if state == "partial":
        assert "`run_incomplete`" in en and "| ❌ エラー | `run_incomplete` |" in ja
        assert "✅" not in ja.split("## チェック")[0]  # never called a success
    assert "## Summary" not in ja and "## 実行概要" in ja


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_comparison_section(tmp_path: Path):
    build_run(
        tmp_path,
        "base",
        {**EXPERIMENT, "train": {**EXPERIMENT["train"], "lr": 1.5e-3}},
        scale=1.1,
        commit="fedcba9876543210fedcba9876543210fedcba98",
    )
    run_dir = build_run(tmp_path, "tiny", {**EXPERIMENT, "report": {**EXPERIMENT["report"], "compare_to": "base"}})
    en, ja = render_both(run_dir, tmp_path / "reports")
    assert_same_numbers(en, ja)
    assert "## Comparison with `base`" in en and "## `base` との比較" in ja
    assert "| code commit" in en and "| コードのコミット" in ja
    assert "| train.lr" in ja and "| 最終の学習損失" in ja and "(noise unknown)" not in ja
    assert headings(ja) == JA_HEADINGS[:1] + ["## `base` との比較"] + JA_HEADINGS[1:]


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_language_list_renders_side_by_side_files(full_run: Path, tmp_path: Path):
    cfg = load_resolved(full_run)
    cfg = cfg.model_copy(update={"report": cfg.report.model_copy(update={"language": ["en", "ja"]})})
    out = tmp_path / "side"
    written = render(full_run, cfg, out)
    assert written == [out / "report.md", out / "report.ja.md"]
    en, ja = (p.read_text(encoding="utf-8") for p in written)
    assert_same_numbers(en, ja)
    assert "## Summary" in en and "## 実行概要" in ja
    assert (out / "loss.png").is_file() and (out / "loss.ja.png").is_file()


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_no_cjk_font_keeps_english_plot_labels_and_says_so(full_run: Path, tmp_path: Path, monkeypatch):
    from pipeline.report import plots

    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    en, ja = render_both(full_run, tmp_path / "nofont")
    assert "fonts-noto-cjk" in ja and "fonts-noto-cjk" not in en
    assert_same_numbers(en, ja)


def test_index_and_compare_have_the_same_numbers_in_both_languages(tmp_path: Path):
    from pipeline.report.index import build_compare, build_index

    build_run(tmp_path, "base", {**EXPERIMENT, "train": {**EXPERIMENT["train"], "lr": 1.5e-3}}, scale=1.1)
    build_run(tmp_path, "tiny")
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    en, ja = build_index(runs, reports), build_index(runs, reports, lang="ja")
    assert (en.name, ja.name) == ("README.md", "README.ja.md")
    en_text, ja_text = en.read_text(encoding="utf-8"), ja.read_text(encoding="utf-8")
    assert Counter(NUMBER.findall(en_text)) == Counter(NUMBER.findall(ja_text)) and "| 完了 " in ja_text
    en, ja = (build_compare(["base", "tiny"], "pair", runs, reports, lang=lang) for lang in ("en", "ja"))
    assert (en.name, ja.name) == ("pair.md", "pair.ja.md")
    en_text, ja_text = en.read_text(encoding="utf-8"), ja.read_text(encoding="utf-8")
    assert Counter(NUMBER.findall(en_text)) == Counter(NUMBER.findall(ja_text))
    assert "### `tiny` vs `base`" in en_text and "### `tiny` と `base`" in ja_text
    assert (reports / "compare" / "pair.ja.png").is_file()


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_html_is_self_contained(full_run: Path, tmp_path: Path):
    from pipeline.report.html import write_html

    out = tmp_path / "html"
    cfg = load_resolved(full_run)
    cfg = cfg.model_copy(update={"report": cfg.report.model_copy(update={"language": ["en", "ja"]})})
    for report in render(full_run, cfg, out):
        page = write_html(report).read_text(encoding="utf-8")
        assert '<meta charset="utf-8">' in page and "<table>" in page and "<th" in page
        assert 'src="data:image/png;base64,' in page
        assert not re.search(r'(?:src|href)="(?!data:|#)', page), "a reference outside the file"
        assert ".png" not in page.split("<body>")[1].replace(".png)", "")
    assert (out / "report.html").is_file() and (out / "report.ja.html").is_file()
    assert 'id="チェック"' in (out / "report.ja.html").read_text(encoding="utf-8")


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_numeric_table_columns_are_right_aligned(full_run: Path, tmp_path: Path):
    en, _ = render_both(full_run, tmp_path / "reports")
    lines = en.split("\n## Training\n", 1)[1].splitlines()
    header = next(i for i, line in enumerate(lines) if re.match(r"\|\s*step\s*\|", line))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    marks = [c.strip() for c in lines[header + 1].strip("|").split("|")]
    assert dict(zip(names, marks))["loss"].endswith(":") and dict(zip(names, marks))["step"].endswith(":")
    harness = en.split("\n## lm-evaluation-harness\n", 1)[1].splitlines()
    header = next(i for i, line in enumerate(harness) if re.match(r"\|\s*task\s*\|", line))
    marks = dict(zip([c.strip() for c in harness[header].strip("|").split("|")],
                     [c.strip() for c in harness[header + 1].strip("|").split("|")]))  # fmt: skip
    assert not marks["task"].endswith(":") and marks["value"].endswith(":")  # text left, numbers right


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_a_completed_run_with_an_error_check_is_never_a_bare_tick(full_run: Path, tmp_path: Path):
    ppl = json.loads((full_run / "eval" / "perplexity.json").read_text())
    (full_run / "eval" / "perplexity.json").write_text(json.dumps({**ppl, "nan_count": 2}))  # nonfinite_loss: error
    en, ja = render_both(full_run, tmp_path / "reports")
    status_en = next(line for line in en.splitlines() if line.startswith("**Status:"))
    status_ja = next(line for line in ja.splitlines() if line.startswith("**状態:"))
    errors = sum(f.severity == "error" for f in run_checks(load_run(full_run)))
    assert errors >= 2  # resolved_mismatch (bench) and nonfinite_loss
    assert status_en.startswith(f"**Status: ❌ completed — {errors} error check(s)**") and "✅" not in status_en
    assert status_ja.startswith(f"**状態: ❌ 完了 — エラーのチェック {errors} 件**") and "✅" not in status_ja
