"""`model.custom`: your own torch module in labnote's loop — bad builders stop at preflight, FLOPs from torch's
counter, checkpoints/resume/perplexity/report for real on CPU, together with the lifecycle (early stopping, the best
checkpoint, a continued run) and the tracker mirror read back by labnote's own importers."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, pipeline_cmd, pipeline_env, project_copy, write_experiment

from pipeline.config.schema import Experiment
from pipeline.errors import ConfigError

MIXER = "examples.custom_model.model:build"
CUSTOM = {
    **copy.deepcopy(TINY),
    "model": {"custom": MIXER, "dim": 32, "layers": 1, "max_seq_len": 32, "expansion": 2},
}
sys.path.insert(0, str(REPO / "tests"))  # tests.custom_models is importable as custom_models


def experiment(model: dict | None = None, **train) -> Experiment:
    body = copy.deepcopy(CUSTOM)
    body["model"].update(model or {})
    body["train"].update(train)
    return Experiment.model_validate({"name": "tiny", **body})


def run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = pipeline_env(**env)
    env["PYTHONPATH"] += f":{REPO / 'tests'}"
    return subprocess.run(pipeline_cmd(*args), cwd=project, env=env, capture_output=True, text=True, timeout=600)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ("no_such_package.model:build", r"^model.custom: cannot import module 'no_such_package.model'"),
        ("examples.custom_model.model:nothing", r"^model.custom: module 'examples.custom_model.model' has no function"),
        ("custom_models.builders:not_a_module", r"^model.custom: custom_models.builders:not_a_module returned dict, "),
        ("custom_models.builders:without_labels", r"^model.custom: NoLabels.forward has no labels argument"),
    ],
)
def test_a_bad_custom_builder_is_one_line_at_preflight(custom: str, message: str):
    from pipeline.config.preflight import preflight

    with pytest.raises(ConfigError, match=message):
        preflight(experiment({"custom": custom}))


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_extra_model_keys_need_custom_and_the_exit_code_is_2(tmp_path: Path):
    with pytest.raises(ValueError, match=r"model.expansion: unknown key; extra keys are allowed only with model"):
        Experiment.model_validate({"name": "x", **TINY, "model": {**TINY["model"], "expansion": 2}})
    write_experiment(tmp_path, "bad", {**CUSTOM, "model": {**CUSTOM["model"], "custom": "custom_models.builders:x"}})
    proc = run(tmp_path, "resolve", "bad")
    assert proc.returncode == 2 and not (tmp_path / "runs" / "bad" / "config.yaml").exists()
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: model.custom: module 'custom_models.builders' has no function 'x'"
    )


def test_flops_of_a_custom_model_come_from_torchs_counter_and_match_the_formula_for_a_llama():
    import torch

    from pipeline.model import build_model
    from pipeline.train.flops import counted_flops_per_token, flops_per_token

    cfg = experiment({"custom": "custom_models.builders:llama", "heads": 2, "attn_implementation": "eager"})
    model = build_model(cfg.model, 300)
    counted = counted_flops_per_token(model, 32, 300, torch.device("cpu"))
    assert counted == pytest.approx(flops_per_token(model, 1, 32, 32), rel=0.02)
    assert all(p.grad is None for p in model.parameters())  # the count leaves no gradients behind


# --------------------------------------------------------------------------- real runs (slow)
@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("custom")
    write_experiment(project, "tiny", CUSTOM)
    ok(run(project, "resolve", "tiny"))
    ok(run(project, "prepare", "runs/tiny"))
    return project


def variant(project: Path, name: str, sets: str) -> str:
    import shutil

    shutil.copytree(project / "runs" / "tiny" / "prepared", project / "runs" / name / "prepared")
    ok(run(project, "resolve", "tiny", "--run-dir", f"runs/{name}", "--set", sets))
    return f"runs/{name}"


@pytest.mark.slow
def test_early_stop_best_checkpoint_mirror_and_skipped_harness(prepared: Path):
    rel = variant(
        prepared,
        "stops",
        "train.early_stopping.patience=1 train.early_stopping.min_delta=10 train.keep_best.metric=val_loss "
        "train.mirror=[tensorboard,wandb] eval.checkpoint=best eval.harness.tasks=[labnote_cloze]",
    )
    ok(run(prepared, "train", rel))
    run_dir = prepared / rel
    done = json.loads((run_dir / "train" / "DONE").read_text())
    # eval_every 4: passes at 4 and 8; an improvement must exceed 10 nats, so the pass at 8 is the patience's one
    assert done["status"] == "early_stopped" and done["steps_done"] == 8 and done["steps_planned"] == 12
    assert done["status_why"].startswith("early stopping: val_loss did not improve by more than 10 for 1 validation")
    val = lines(run_dir / "train" / "validation.jsonl")
    best = min((v for v in val if v["step"] > 0), key=lambda v: v["val_loss"])
    info = json.loads((run_dir / "checkpoints" / "best" / "best.json").read_text())
    assert info == {"step": best["step"], "metric": "val_loss", "value": best["val_loss"]}
    saved = json.loads((run_dir / "checkpoints" / "best" / "custom_model.json").read_text())
    assert saved["custom"] == MIXER and saved["class"].endswith("CausalMixerLM") and saved["transformers"] is False

    ok(run(prepared, "eval", rel))
    ppl = json.loads((run_dir / "eval" / "perplexity.json").read_text())
    assert ppl["checkpoint"] == "best" and ppl["step"] == best["step"] and math.isfinite(ppl["perplexity"])
    assert ppl["accuracy"] is not None and 0 <= ppl["accuracy"] <= 1
    eval_done = json.loads((run_dir / "eval" / "DONE").read_text())
    assert eval_done["harness"] is False and "not a transformers PreTrainedModel" in eval_done["harness_skipped"]

    ok(run(prepared, "report", rel, "--out", "reports/stops"))
    report = (prepared / "reports" / "stops" / "report.md").read_text()
    assert "**Status: ⏹ early-stopped** — 8 of 12 configured steps" in report
    assert "Why it stopped: early stopping: val_loss" in report and "run_incomplete" not in report
    assert "Not run: model.custom: examples.custom_model.model.CausalMixerLM is not a transformers" in report

    # The mirror, read back by labnote's own importers, holds the same numbers.
    metrics = lines(run_dir / "train" / "metrics.jsonl")
    for fmt, rel_tol in (("tensorboard", 1e-6), ("wandb", 1e-12)):  # TensorBoard stores float32
        ok(run(prepared, "import", f"{rel}/mirror/{fmt}", "--from", fmt, "--exp", f"back_{fmt}"))
        back = prepared / "runs" / f"back_{fmt}" / "train"
        got = lines(back / "metrics.jsonl")
        assert [m["step"] for m in got] == [m["step"] for m in metrics]
        for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
            assert [m[key] for m in got] == [pytest.approx(m[key], rel=rel_tol) for m in metrics], (fmt, key)
        got_val = lines(back / "validation.jsonl")
        assert [(v["step"], v["val_loss"]) for v in got_val] == [
            (v["step"], pytest.approx(v["val_loss"], rel=rel_tol)) for v in val
        ]
        assert json.loads((back / "plan.json").read_text())["steps_planned"] == 12


@pytest.mark.slow
def test_raising_only_the_steps_of_a_finished_run_continues_it(prepared: Path):
    from pipeline.train.optim import lr_factor

    rel = variant(prepared, "grows", "train.steps=8")
    ok(run(prepared, "train", rel))
    run_dir = prepared / rel
    first = lines(run_dir / "train" / "metrics.jsonl")
    ok(run(prepared, "resolve", "tiny", "--run-dir", rel, "--set", "train.steps=12"))
    ok(run(prepared, "train", rel))
    assert not (run_dir / "archive").exists()  # continued, not archived and started over
    metrics = lines(run_dir / "train" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 10, 12] and metrics[:4] == first
    assert [m["segment"] for m in metrics] == [0, 0, 0, 0, 1, 1]
    done = json.loads((run_dir / "train" / "DONE").read_text())
    assert done["status"] == "completed" and done["steps_done"] == 12 and done["resumed_from"] == 8
    assert [(c["steps_planned"], c["steps_done"], c["status"]) for c in done["continuations"]] == [(8, 8, "completed")]
    # The new length's schedule from step 8 on: step 10's lr is the 12-step cosine's, not the 8-step floor.
    tc = experiment().train
    assert metrics[4]["lr"] == pytest.approx(tc.lr * lr_factor(9, tc.warmup_steps, 12, tc.min_lr_ratio))
    launches = json.loads((run_dir / "provenance.json").read_text())["stages"]["train"]["launches"]
    assert len(launches) == 2 and launches[1]["resumed_from"] == 8


@pytest.mark.slow
def test_make_report_exp_custom_model(tmp_path: Path):
    """The example experiment through Make, at test size."""
    root = project_copy(tmp_path / "repo")
    env = pipeline_env()
    env.pop("PYTHONPATH")
    small = (
        "data.max_documents=60 data.tokenizer.vocab_size=300 data.seq_len=32 model.max_seq_len=32 model.dim=32 "
        "model.layers=1 train.steps=8 train.batch_size=4 train.warmup_steps=2 train.log_every=2 train.eval_every=4 "
        "train.eval_batches=2 eval.perplexity.max_batches=2"
    )
    proc = subprocess.run(
        ["make", "report", "EXP=custom_model", f"SET={small}", f"PY={sys.executable}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (root / "reports" / "custom_model" / "report.md").read_text()
    assert "8 of 8 configured steps" in report
    assert "Not run: model.custom: examples.custom_model.model.CausalMixerLM" in report
    ppl = json.loads((root / "runs" / "custom_model" / "eval" / "perplexity.json").read_text())
    assert ppl["checkpoint"] == "best" and math.isfinite(ppl["perplexity"])


def test_the_bench_builds_a_custom_model_and_skips_what_needs_transformers():
    import torch

    from pipeline.bench.build import Skip, build_variant_model, mismatches, resolved_settings

    cfg = Experiment.model_validate({"name": "b", **CUSTOM, "bench": {"variants": [{"name": "fp32"}], "seq_len": 16}})
    settings = cfg.bench.settings(cfg.bench.expanded()[0])
    model, runner = build_variant_model(cfg, settings, 300, torch.device("cpu"))
    ids = torch.randint(0, 300, (2, 16))
    assert runner(input_ids=ids, labels=ids).loss.ndim == 0 and runner(input_ids=ids).logits.shape == (2, 16, 300)
    resolved = resolved_settings(model, runner, None, settings, "train")
    assert resolved["attn_implementation"] is None and mismatches(settings, resolved) == []
    with pytest.raises(Skip, match=r"model.custom: finetune lora \(peft\) needs a transformers model"):
        build_variant_model(cfg, {**settings, "finetune": "lora"}, 300, torch.device("cpu"))
