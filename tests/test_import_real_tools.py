"""`make import` on runs the tools made themselves (tests/real_tool_fixtures.py: a tiny transformers.Trainer,
pytorch_lightning.Trainer, wandb offline and lm_eval.simple_evaluate, on CPU): every assertion compares what the
import and its report show with what the tool itself wrote (trainer_state.json, metrics.csv, event files, the
.wandb log, results and samples files), and FROM=auto must pick the right adapter."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from real_tool_fixtures import (  # noqa: F401 - session fixtures, used by name
    LM_EVAL_LIMIT,
    WANDB_STEPS,
    hf_runs_dir,
    lightning_runs_dir,
    lm_eval_dir,
    wandb_dir,
)

from pipeline.config.load import load_experiment
from pipeline.config.resolve import freeze
from pipeline.importers import detect, run_import
from pipeline.report.checks import run_checks
from pipeline.report.loader import load_run
from pipeline.report.render import render
from pipeline.rundir import RunDir

# Completed, with or without warnings (the status line carries the worst finding; never an error here).
COMPLETED = re.compile(r"\*\*Status: (✅ completed|⚠️ completed — \d+ warning\(s\))\*\*")


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def imported(src: Path, name: str, lang: str = "en", **kw) -> tuple[Path, str, dict[str, str]]:
    """FROM=auto import, the report in `lang`, and the checks that fired (rule -> English message)."""
    run_dir = run_import(src, "auto", name, **kw)
    cfg = load_experiment(name, [f"report.language={lang}"])
    freeze(cfg, RunDir(run_dir))
    (report,) = render(run_dir, cfg, Path("reports") / name)
    return run_dir, report.read_text(encoding="utf-8"), {f.rule: str(f.message) for f in run_checks(load_run(run_dir))}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def done(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "DONE").read_text())


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "import" / "import.json").read_text())


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def tb_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value, read with TensorBoard's own EventAccumulator (not our reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    from tensorboard.util import tensor_util

    out = {}
    for tag in acc.Tags()["tensors"]:
        arrays = [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        if arrays and all(a.size == 1 and a.dtype.kind in "fiu" for _, a in arrays):  # scalars, not texts
            out[tag] = {step: float(a.item()) for step, a in arrays}
    for tag in acc.Tags()["scalars"]:
        out[tag] = {e.step: e.value for e in acc.Scalars(tag)}
    return out


# --------------------------------------------------------------------------- Hugging Face Trainer
@pytest.mark.slow
def test_hf_trainer_finished_23_of_23_with_two_eval_sets(workdir, hf_runs_dir):
    src = hf_runs_dir["finished"]
    state = json.loads((src / "trainer_state.json").read_text())
    assert (state["global_step"], state["max_steps"], state["logging_steps"]) == (23, 23, 5)
    assert detect(src)[0] == "hf-trainer"
    run_dir, report, found = imported(src, "hf")
    train = [h for h in state["log_history"] if "loss" in h]
    assert train[-1]["step"] == 20  # the last training log is step 20; the run did 23 steps
    assert (done(run_dir)["status"], done(run_dir)["steps_done"], done(run_dir)["steps_planned"]) == (
        "completed",
        23,
        23,
    )
    assert COMPLETED.search(report) and "** — 23 of 23 planned steps logged" in report  # (a warning is no failure)
    assert "run_incomplete" not in found and "metrics_not_imported" not in found
    metrics = rows(run_dir / "train" / "metrics.jsonl")
    assert [(m["step"], m["loss"], m["lr"], m["grad_norm"]) for m in metrics] == [
        (h["step"], h["loss"], h["learning_rate"], h["grad_norm"]) for h in train
    ]
    val = rows(run_dir / "train" / "validation.jsonl")
    for name in ("a", "b"):
        theirs = [(h["step"], h[f"eval_{name}_loss"]) for h in state["log_history"] if f"eval_{name}_loss" in h]
        assert [(v["step"], v["val_loss"]) for v in val if v["dataset"] == name] == theirs
        assert [s for s, _ in theirs] == [10, 20, 23]
        assert f"### {name}\n" in report
    assert "The source evaluated 2 eval sets" in report
    assert done(run_dir)["summary"]["train_runtime"] == train_summary(state)["train_runtime"]


def train_summary(state: dict) -> dict:
    return next(h for h in state["log_history"] if "train_runtime" in h)


@pytest.mark.slow
def test_hf_checkpoints_of_two_runs_are_listed_and_version_picks_one(workdir, hf_runs_dir):
    src = hf_runs_dir["two_runs"]
    states = {p.parent.name: json.loads(p.read_text()) for p in src.glob("checkpoint-*/trainer_state.json")}
    assert {s["max_steps"] for s in states.values()} == {8, 15}
    run_dir, report, found = imported(src, "hf_two")
    runs = record(run_dir)["runs"]
    assert [r["name"] for r in runs] == ["checkpoint-4, checkpoint-8", "checkpoint-5, checkpoint-10, checkpoint-15"]
    assert next(r for r in runs if r["read"])["config"]["max_steps"] == 15
    assert "several_runs_in_source" in found and "2 different runs" in found["several_runs_in_source"]
    assert (done(run_dir)["status"], done(run_dir)["steps_done"]) == ("completed", 15)
    # VERSION= reads the other run's checkpoints: its own counters, never mixed with the other run's rows
    run_dir, report, found = imported(src, "hf_first", version="checkpoint-8")
    state = states["checkpoint-8"]
    assert (done(run_dir)["steps_done"], done(run_dir)["steps_planned"]) == (state["global_step"], 8)
    assert [m["step"] for m in rows(run_dir / "train" / "metrics.jsonl")] == [
        h["step"] for h in state["log_history"] if "loss" in h
    ]
    run_dir, report, found = imported(src, "hf_partial", version="4")
    assert (
        "**Status: ⚠️ partial (stopped at 4 of 8)**" in report and "4 of 8 configured steps" in found["run_incomplete"]
    )
    _, ja, _ = imported(src, "hf_partial_ja", lang="ja", version="4")
    assert "部分的（8 ステップ中 4 ステップで停止）" in ja


@pytest.mark.slow
def test_tensorboard_from_the_hf_trainer_equals_trainer_state(workdir, hf_runs_dir):
    src = hf_runs_dir["finished"]
    state = json.loads((src / "trainer_state.json").read_text())
    assert detect(src / "runs")[0] == "tensorboard"  # the event files alone; the output_dir is the Trainer's
    run_dir, report, found = imported(src / "runs", "hf_tb")
    (folder,) = {p.parent for p in (src / "runs").rglob("events.out.tfevents.*")}
    scalars = tb_scalars(folder)
    ours = {m["step"]: m for m in rows(run_dir / "train" / "metrics.jsonl")}
    train = [h for h in state["log_history"] if "loss" in h]
    assert sorted(ours) == [h["step"] for h in train] == sorted(scalars["train/loss"])
    for h in train:  # TensorBoard stores float32: equal to the trainer's own value at that precision
        assert ours[h["step"]]["loss"] == scalars["train/loss"][h["step"]] == pytest.approx(h["loss"], rel=1e-6)
        assert ours[h["step"]]["lr"] == pytest.approx(h["learning_rate"], rel=1e-6)
    val = rows(run_dir / "train" / "validation.jsonl")
    assert sorted({v["dataset"] for v in val}) == ["a", "b"]
    for v in val:
        assert v["val_loss"] == scalars[f"eval/{v['dataset']}_loss"][v["step"]]
    # planned steps from the Trainer's own TrainingArguments (the `args` text it writes to TensorBoard)
    assert (done(run_dir)["status"], done(run_dir)["steps_planned"], done(run_dir)["steps_done"]) == (
        "completed",
        state["max_steps"],
        state["global_step"],
    )
    assert "metrics_not_imported" not in found and "### b\n" in report


# --------------------------------------------------------------------------- PyTorch Lightning
@pytest.mark.slow
def test_lightning_versions_are_told_apart_and_a_resume_is_joined(workdir, lightning_runs_dir):
    logs = lightning_runs_dir["logs"]
    assert detect(lightning_runs_dir["root"])[0] == "lightning" and detect(logs)[0] == "lightning"
    run_dir, report, found = imported(lightning_runs_dir["root"], "pl")  # the Trainer's default_root_dir
    runs = record(run_dir)["runs"]
    assert [r["name"] for r in runs] == ["version_0", "version_1 + version_2"]
    assert runs[1]["read"] and "several_runs_in_source" in found
    assert "version_0, version_1 + version_2" in found["several_runs_in_source"]
    # the resumed run: two segments, steps counted as Lightning's step + 1, nested max_steps found
    v1, v2 = csv_rows(logs / "version_1" / "metrics.csv"), csv_rows(logs / "version_2" / "metrics.csv")
    source = [(int(r["step"]) + 1, float(r["train_loss_step"])) for r in v1 + v2 if r["train_loss_step"]]
    metrics = rows(run_dir / "train" / "metrics.jsonl")
    assert [(m["step"], m["loss"]) for m in metrics] == source
    assert [m["segment"] for m in metrics] == [0] * 3 + [1] * 3
    last = max(int(r["step"]) for r in v2) + 1
    assert (done(run_dir)["status"], done(run_dir)["steps_done"], done(run_dir)["steps_planned"]) == (
        "completed",
        last,
        30,
    )
    assert last == 30 and "resumed_run" in found and COMPLETED.search(report) and "** — 30 of 30" in report
    lr = {int(r["step"]) + 1: float(r["lr-AdamW"]) for r in v1 + v2 if r["lr-AdamW"]}
    assert all(m["lr"] == lr[m["step"]] for m in metrics)  # LearningRateMonitor's rows joined their step
    val = [(int(r["step"]) + 1, float(r["val_loss"])) for r in v1 + v2 if r["val_loss"]]
    assert [(v["step"], v["val_loss"]) for v in rows(run_dir / "train" / "validation.jsonl")] == val
    assert "metrics_not_imported" not in found
    # VERSION=0: the other run alone, never stitched to the newer one
    run_dir, report, found = imported(logs, "pl_v0", version="0")
    v0 = csv_rows(logs / "version_0" / "metrics.csv")
    assert [(m["step"], m["loss"]) for m in rows(run_dir / "train" / "metrics.jsonl")] == [
        (int(r["step"]) + 1, float(r["train_loss_step"])) for r in v0 if r["train_loss_step"]
    ]
    assert done(run_dir)["segments"] == 1 and "resumed_run" not in found
    assert load_experiment("pl_v0").train.lr == 0.01  # version_0's own hparams


@pytest.mark.slow
def test_tensorboard_from_lightning_equals_its_csv_and_reports_the_histograms(workdir, lightning_runs_dir):
    tb, logs = lightning_runs_dir["tb"], lightning_runs_dir["logs"]
    assert detect(tb)[0] == "tensorboard"
    run_dir, report, found = imported(tb, "pl_tb")
    assert [r["name"] for r in record(run_dir)["runs"]] == ["version_0", "version_1 + version_2"]
    csv_loss = {
        int(r["step"]) + 1: float(r["train_loss_step"])
        for v in ("version_1", "version_2")
        for r in csv_rows(logs / v / "metrics.csv")
        if r["train_loss_step"]
    }
    metrics = rows(run_dir / "train" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == sorted(csv_loss)
    for m in metrics:  # the same value the CSVLogger wrote, at TensorBoard's float32 precision
        assert m["loss"] == pytest.approx(csv_loss[m["step"]], rel=1e-6)
    assert (done(run_dir)["status"], done(run_dir)["steps_planned"], done(run_dir)["segments"]) == ("completed", 30, 2)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    histograms = 0
    for v in ("version_1", "version_2"):
        acc = EventAccumulator(str(tb / v), size_guidance={"histograms": 0})
        acc.Reload()
        histograms += len(acc.Histograms("weights/layer0"))
    assert histograms >= 2
    assert record(run_dir)["not_carried"] == {"weights/layer0 (histogram)": histograms}
    assert f"weights/layer0 (histogram) ({histograms} rows)" in found["metrics_not_imported"]
    assert "| weights/layer0 (histogram) |" in report


# --------------------------------------------------------------------------- W&B offline
def test_wandb_offline_run(workdir, wandb_dir):
    assert detect(wandb_dir)[0] == "wandb"
    run_dir, report, found = imported(wandb_dir, "wb")
    metrics = rows(run_dir / "train" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, WANDB_STEPS + 1))
    logged = wandb_history(wandb_dir)
    assert [(m["loss"], m["lr"]) for m in metrics] == [(h["train/loss"], h["train/learning_rate"]) for h in logged]
    # the config's nested trainer.max_steps is the planned length
    assert (done(run_dir)["status"], done(run_dir)["steps_done"], done(run_dir)["steps_planned"]) == (
        "completed",
        WANDB_STEPS,
        WANDB_STEPS,
    )
    assert record(run_dir)["steps_planned_from"] == "source" and "planned_steps_unknown" not in found
    assert COMPLETED.search(report) and "** — 30 of 30" in report
    custom = [r["custom/tokens_per_batch"] for r in rows(run_dir / "train" / "extra.jsonl")]
    assert custom == [h["custom/tokens_per_batch"] for h in logged]
    val = rows(run_dir / "train" / "validation.jsonl")
    assert [(v["step"], v["val_loss"]) for v in val] == [
        (h["_step"], h["eval/loss"]) for h in logged if "eval/loss" in h
    ]
    assert done(run_dir)["summary"]["best_eval_loss"] == 2.1
    assert record(run_dir)["not_carried"] == {"weights (histogram)": 3, "status_text (text)": 3}
    assert "weights (histogram) (3 rows)" in found["metrics_not_imported"]


def wandb_history(wandb_dir: Path) -> list[dict]:
    """Each wandb.log row as W&B's own protobuf classes parse the transaction log (numbers only)."""
    from wandb.proto import wandb_internal_pb2

    from pipeline.importers.wandb_offline import raw_records

    (path,) = wandb_dir.rglob("run-*.wandb")
    out = []
    for body in raw_records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(body)
        if rec.WhichOneof("record_type") == "history":
            row = {"/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            out.append({k: v for k, v in row.items() if isinstance(v, (int, float))})
    return out


# --------------------------------------------------------------------------- lm-evaluation-harness
@pytest.mark.slow
def test_lm_eval_group_and_samples(workdir, lm_eval_dir):
    assert detect(lm_eval_dir)[0] == "lm-eval"
    (results_file,) = lm_eval_dir.rglob("results_*.json")
    result = json.loads(results_file.read_text())
    assert result["group_subtasks"] == {"labnote_local": ["labnote_cloze", "labnote_nextword", "labnote_rolling"]}
    run_dir, report, found = imported(lm_eval_dir, "lme")
    tasks = rows(run_dir / "eval" / "tasks.jsonl")
    assert [t["task"] for t in tasks if t.get("is_group")] == ["labnote_local"]
    assert {t["group"] for t in tasks if not t.get("is_group")} == {"labnote_local"}
    for t in tasks:
        if not t.get("is_group"):
            assert t["value"] == result["results"][t["task"]][f"{t['metric']},{t['filter']}"]
            assert (t["n"], t["n_original"]) == tuple(
                result["n-samples"][t["task"]][k] for k in ("effective", "original")
            )
    assert "### Groups" in report and "| labnote_local |" in report.split("### Groups", 1)[1].split("###", 1)[0]
    samples = json.loads((run_dir / "eval" / "harness_timing.json").read_text())["samples"]
    for task in result["group_subtasks"]["labnote_local"]:
        (sample_file,) = lm_eval_dir.rglob(f"samples_{task}_*.jsonl")
        lines = [json.loads(line) for line in sample_file.read_text().splitlines()]
        for key, counts in samples[task].items():
            metric, filt = key.split(",")
            mine = [s for s in lines if s["filter"] == filt]
            assert counts["items"] == len(mine) == LM_EVAL_LIMIT
            if counts["above_zero"] is not None:  # a mean over the same items is the results file's score
                assert counts["above_zero"] == sum(s[metric] > 0 for s in mine)
                assert counts["above_zero"] / counts["items"] == pytest.approx(result["results"][task][key])
    assert "### Per-sample files" in report and "metrics_not_imported" not in found
    assert {f["path"].rsplit("/", 1)[-1].split("_2")[0] for f in record(run_dir)["files"]} >= {
        "samples_labnote_cloze",
        "samples_labnote_nextword",
        "samples_labnote_rolling",
    }
