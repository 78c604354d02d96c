"""The train stage for real on CPU: determinism, resume after a hard kill, SIGTERM, stale-output archiving."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import pipeline_cmd, pipeline_env
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        pipeline_cmd(*args), cwd=project, env=pipeline_env(**env), capture_output=True, text=True, timeout=600
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from conftest import TINY, write_experiment

    project = tmp_path_factory.mktemp("project")
    write_experiment(project, "tiny", TINY)
    ok(run(project, "resolve", "tiny"))
    ok(run(project, "prepare", "runs/tiny"))
    return project


def fresh_copy(project: Path, name: str) -> Path:
    dest = project / "runs" / name
    shutil.copytree(project / "runs" / "tiny", dest)
    return dest


@pytest.fixture(scope="module")
def uninterrupted(prepared: Path) -> Path:
    run_dir = fresh_copy(prepared, "straight")
    ok(run(prepared, "train", str(run_dir.relative_to(prepared))))
    return run_dir


def test_train_writes_the_contract(uninterrupted: Path):
    metrics = lines(uninterrupted / "train" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 10, 12]
    expected = {
        "step",
        "epoch",
        "loss",
        "grad_norm",
        "lr",
        "tokens",
        "tokens_per_s",
        "step_time_s",
        "data_time_s",
        "mem_peak_gib",
        "segment",
        "time_utc",
        "flops_per_token",
        "flops_per_s",
        "mfu",
        "mfu_datasheet",
        "host_load",
    }
    assert all(set(m) == expected for m in metrics)
    assert all(m["host_load"] is None or 0.0 <= m["host_load"] <= 1.0 for m in metrics)
    # FLOP accounting: a constant per token, times the logged rate, over the peak recorded in provenance.
    peak = json.loads((uninterrupted / "provenance.json").read_text())["device_peak"]
    assert peak["flops_per_s"] > 0 and peak["device"] == "cpu" and peak["datasheet_flops_per_s"] is None
    done = json.loads((uninterrupted / "train" / "DONE").read_text())
    assert {m["flops_per_token"] for m in metrics} == {done["flops_per_token"]}
    for m in metrics:
        assert m["flops_per_s"] == pytest.approx(m["flops_per_token"] * m["tokens_per_s"], rel=1e-12)
        assert m["mfu"] == pytest.approx(m["flops_per_s"] / peak["flops_per_s"], rel=1e-12)
        assert m["mfu_datasheet"] is None
    assert {m["segment"] for m in metrics} == {0}
    assert metrics[-1]["tokens"] == 12 * 4 * 32
    # warm-up of 2 steps then cosine: step 2 applies the full peak lr, the last step is near the floor.
    assert metrics[0]["lr"] == pytest.approx(3e-3)
    assert metrics[-1]["lr"] < metrics[0]["lr"]
    validation = lines(uninterrupted / "train" / "validation.jsonl")
    assert [v["step"] for v in validation] == [0, 4, 8, 12]
    assert validation[-1]["val_loss"] < validation[0]["val_loss"]
    done = json.loads((uninterrupted / "train" / "DONE").read_text())
    assert done["status"] == "completed" and done["steps_done"] == done["steps_planned"] == 12
    # keep_checkpoints: 2 -> only steps 10 and 12 remain, each loadable as a Hugging Face model dir
    ckpts = sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    assert ckpts == ["0000000010", "0000000012"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_state.pt", "config.yaml"} <= {
        p.name for p in (uninterrupted / "checkpoints" / "0000000012").iterdir()
    }
    prov = json.loads((uninterrupted / "provenance.json").read_text())
    assert prov["stages"]["train"]["duration_s"] > 0 and prov["versions"]["torch"]


def test_resume_after_hard_kill_matches_uninterrupted_run(prepared: Path, uninterrupted: Path):
    run_dir = fresh_copy(prepared, "killed")
    rel = str(run_dir.relative_to(prepared))
    killed = run(prepared, "train", rel, LABNOTE_FAULT_AT_STEP="7")
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "train" / "DONE").exists()
    assert json.loads((run_dir / "train" / "plan.json").read_text())["steps_planned"] == 12
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["0000000005"]
    ok(run(prepared, "train", rel))
    resumed, straight = lines(run_dir / "train" / "metrics.jsonl"), lines(uninterrupted / "train" / "metrics.jsonl")
    assert [m["step"] for m in resumed] == [m["step"] for m in straight]  # no step logged twice
    assert resumed[-1]["loss"] == straight[-1]["loss"]
    assert [m["loss"] for m in resumed] == [m["loss"] for m in straight]
    a = load_file(run_dir / "checkpoints" / "0000000012" / "model.safetensors")
    b = load_file(uninterrupted / "checkpoints" / "0000000012" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    done = json.loads((run_dir / "train" / "DONE").read_text())
    assert done["resumed_from"] == 5
    # The resumed process is a new segment: the report keeps its first interval out of the throughput range.
    assert [m["segment"] for m in resumed] == [0, 0, 1, 1, 1, 1]
    from pipeline.report.loader import load_run

    assert [(s["first_step"], s["last_step"]) for s in load_run(run_dir).segments] == [(2, 4), (6, 12)]
    # Provenance keeps both launches: the killed one is closed at its last log line (step 6, one step past the
    # step-5 checkpoint it resumed from), and the report adds them up.
    from pipeline.report.tables import train_time

    launches = json.loads((run_dir / "provenance.json").read_text())["stages"]["train"]["launches"]
    assert len(launches) == 2 and launches[0]["killed"] is True and launches[0]["duration_s"] >= 0
    assert launches[1]["resumed_from"] == 5 and launches[1]["steps_lost"] == 1 and launches[1]["duration_s"] > 0
    total = train_time(load_run(run_dir))
    assert total["launches"] == 2 and total["lost_steps"] == 1
    assert total["total_s"] == pytest.approx(launches[0]["duration_s"] + launches[1]["duration_s"])


def test_sigterm_saves_a_checkpoint_and_exits_143(prepared: Path):
    run_dir = fresh_copy(prepared, "preempted")
    rel = str(run_dir.relative_to(prepared))
    proc = run(prepared, "train", rel, LABNOTE_FAULT_AT_STEP="7", LABNOTE_FAULT_SIGNAL="TERM")
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert (run_dir / "checkpoints" / "0000000007" / "train_state.pt").is_file()
    assert not (run_dir / "train" / "DONE").exists()
    ok(run(prepared, "train", rel))
    assert json.loads((run_dir / "train" / "DONE").read_text())["resumed_from"] == 7


def test_changed_train_config_archives_old_outputs(prepared: Path, uninterrupted: Path):
    run_dir = prepared / "runs" / "changed"
    shutil.copytree(uninterrupted, run_dir)
    rel = str(run_dir.relative_to(prepared))
    old_metrics = (run_dir / "train" / "metrics.jsonl").read_text()
    ok(run(prepared, "resolve", "tiny", "--run-dir", rel, "--set", "train.lr=1e-3 train.steps=6"))
    ok(run(prepared, "train", rel))
    archived = list((run_dir / "archive").glob("*/train/metrics.jsonl"))
    assert len(archived) == 1 and archived[0].read_text() == old_metrics  # kept, not overwritten
    assert [m["step"] for m in lines(run_dir / "train" / "metrics.jsonl")] == [2, 4, 6]


def test_perplexity_stage(prepared: Path, uninterrupted: Path):
    rel = str(uninterrupted.relative_to(prepared))
    ok(run(prepared, "eval", rel))
    ppl = json.loads((uninterrupted / "eval" / "perplexity.json").read_text())
    assert ppl["step"] == 12 and ppl["batches"] == 4 and ppl["valid_batches"] == 4
    assert ppl["tokens"] == 4 * 4 * 31  # 4 batches x 4 sequences x 31 predicted tokens
    assert ppl["nan_count"] == 0 and ppl["dtype"] == "float32" and ppl["device"] == "cpu"
    import math

    assert ppl["perplexity"] == pytest.approx(math.exp(ppl["loss"]))


def test_resume_refuses_a_checkpoint_that_lacks_a_tensor_of_the_model(tmp_path: Path):
    from pipeline.config.schema import ModelConfig
    from pipeline.errors import UserError
    from pipeline.model import build_model
    from pipeline.train.loop import check_state_keys

    model = build_model(ModelConfig(dim=32, layers=1, heads=2, max_seq_len=32), vocab_size=300)
    weights = dict(model.state_dict())
    weights.pop("lm_head.weight")  # tied to the input embedding: stored once, not missing
    check_state_keys(model, weights, tmp_path)
    weights.pop("model.layers.0.mlp.down_proj.weight")
    with pytest.raises(UserError, match=r"missing 1 tensor\(s\) the model has \(model.layers.0.mlp.down_proj.weight\)"):
        check_state_keys(model, weights, tmp_path)
    extra = {**dict(model.state_dict()), "model.layers.9.extra": weights["model.norm.weight"]}
    with pytest.raises(UserError, match=r"1 tensor\(s\) the model does not have \(model.layers.9.extra\)"):
        check_state_keys(model, extra, tmp_path)
