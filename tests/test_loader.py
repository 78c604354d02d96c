"""Run-directory loader, JSONL logs that survive a kill, and rendering a report from a damaged run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from pipeline.config.load import load_experiment
from pipeline.config.resolve import load_resolved, to_yaml
from pipeline.report.checks import damaged_files, nonfinite_loss, run_checks
from pipeline.report.loader import load_run
from pipeline.report.render import render
from pipeline.rundir import RunDir
from pipeline.train.metrics_log import JsonlLog

LOSSES = {10: 5.123456, 20: 4.5, 30: 3.9, 40: 3.3, 50: 2.718281828}  # last complete step: 50 -> "2.7183"
TORN_LOSS = 1.23456789


def metric(step: int, loss) -> dict:
    return {
        "step": step,
        "epoch": step / 100,
        "loss": loss,
        "grad_norm": 0.8,
        "lr": 1e-3,
        "tokens": step * 256,
        "tokens_per_s": 5000.0 + step,
        "step_time_s": 0.05,
        "data_time_s": 0.001,
        "mem_peak_gib": 0.2,
        "time_utc": "2026-01-01T00:00:00+00:00",
    }


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def write_config(run: Path, steps: int = 50, tmp_root: Path | None = None) -> None:
    """A real resolved config: an Experiment loaded from YAML and dumped the way `resolve` does."""
    exp_dir = (tmp_root or run.parent) / "experiments"
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "tiny.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"dim": 32, "layers": 1, "heads": 2, "max_seq_len": 32},
                "data": {"source": {"type": "builtin", "name": "kjv"}, "seq_len": 32},
                "train": {"steps": steps, "log_every": 10, "eval_every": 25},
                "report": {"title": "Tiny damaged run"},
            }
        )
    )
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(to_yaml(load_experiment("tiny", root=exp_dir)), encoding="utf-8")


def write_provenance(run: Path) -> None:
    (run / "provenance.json").write_text(
        json.dumps(
            {
                "stages": {"train": {"duration_s": 12.5}},
                "experiment": "tiny",
                "config_hash": "ab" * 32,
                "host": "testhost",
                "git": {"commit": "0123456789abcdef", "dirty": False, "diff_sha256": None},
                "versions": {"python": "3.11", "torch": "x", "transformers": "y", "datasets": "z"},
                "device": {"cpu": "test cpu", "cpu_count": 2, "gpus": [], "torch_threads": 2},
                "scheduler": {"scheduler": None, "job_id": None},
                "container": {"runtime": None, "image": None, "sha256": None},
            }
        )
    )
    (run / "prepared").mkdir(exist_ok=True)
    (run / "prepared" / "stats.json").write_text(
        json.dumps(
            {
                "source": "builtin:kjv",
                "tokenizer": "bytes",
                "vocab_size": 260,
                "splits": {
                    "train": {"documents": 10, "characters": 5000, "tokens": 5000},
                    "test": {"documents": 1, "characters": 500, "tokens": 500},
                },
            }
        )
    )


@pytest.fixture
def damaged_run(tmp_path: Path) -> Path:
    """A finished 50-step run whose metrics.jsonl ends in a line torn mid-JSON."""
    run = tmp_path / "runs" / "tiny"
    write_config(run, steps=50, tmp_root=tmp_path)
    write_provenance(run)
    train = run / "train"
    train.mkdir()
    torn = json.dumps(metric(60, TORN_LOSS))[:37]  # cut mid-record, no newline: a kill during write()
    (train / "metrics.jsonl").write_text(jsonl([metric(s, v) for s, v in LOSSES.items()]) + torn)
    (train / "validation.jsonl").write_text(
        jsonl(
            [
                {
                    "step": s,
                    "epoch": s / 100,
                    "val_loss": v,
                    "val_perplexity": math.exp(v),
                    "val_accuracy": 0.2,
                    "val_tokens": 512,
                }
                for s, v in ((0, 5.6), (25, 4.1), (50, 3.2))
            ]
        )
    )
    (train / "DONE").write_text(
        json.dumps(
            {
                "status": "completed",
                "steps_done": 50,
                "steps_planned": 50,
                "steps_per_epoch": 100,
                "tokens_per_step": 256,
                "parameters": {"total": 1000, "trainable": 1000, "embedding": 400, "non_embedding": 600},
                "device": "cpu",
                "world_size": 1,
            }
        )
    )
    return run


# --------------------------------------------------------------------------- loading
def test_torn_last_line_keeps_complete_lines_and_records_a_problem(damaged_run):
    run = load_run(damaged_run)
    assert run.name == "tiny"
    assert run.metrics["step"].tolist() == list(LOSSES)
    assert run.metrics["loss"].tolist() == pytest.approx(list(LOSSES.values()))
    assert run.validation["step"].tolist() == [0, 25, 50]
    assert run.done.status == "completed" and run.status == "completed"
    assert len(run.problems) == 1
    assert "metrics.jsonl" in run.problems[0] and "last line" in run.problems[0]
    finding = damaged_files(run)
    assert finding is not None and finding.severity == "warning"
    assert "metrics.jsonl: last line" in finding.message
    assert "damaged_files" in [f.rule for f in run_checks(run)]


def test_torn_line_in_the_middle_names_its_line_number(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "train").mkdir(parents=True)
    lines = [json.dumps(metric(s, 4.0)) for s in (10, 20, 30, 40)]
    lines[2] = lines[2][:20]  # a torn line followed by appends from a resumed run
    (run_dir / "train" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    run = load_run(run_dir)
    assert run.metrics["step"].tolist() == [10, 20, 40]
    assert run.problems == ["train/metrics.jsonl: line 3 is not valid JSON and was skipped"]


def test_lines_without_step_are_skipped_and_reported(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / "validation.jsonl").write_text(
        jsonl([{"step": 0, "val_loss": 5.0}, {"val_loss": 4.0}, {"step": 10, "val_loss": 3.0}]) + "[1, 2]\n"
    )
    run = load_run(run_dir)
    assert run.validation["step"].tolist() == [0, 10]
    assert len(run.problems) == 2
    assert all("has no 'step'" in p for p in run.problems)
    assert "line 2" in run.problems[0] and "line 4" in run.problems[1]


def test_duplicate_steps_keep_the_last_record(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / "metrics.jsonl").write_text(
        jsonl([metric(10, 5.0), metric(20, 4.0), metric(20, 3.5), metric(30, 3.0)])
    )
    run = load_run(run_dir)
    assert run.metrics["step"].tolist() == [10, 20, 30]
    assert run.metrics.loc[run.metrics["step"] == 20, "loss"].item() == pytest.approx(3.5)


def test_nan_and_inf_strings_are_read_as_floats_and_flagged(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "train" / "metrics.jsonl").write_text(
        jsonl([metric(10, 4.0), metric(20, "nan"), metric(30, "inf"), metric(40, 3.0)])
    )
    (run_dir / "train" / "validation.jsonl").write_text(jsonl([{"step": 20, "val_loss": "-inf"}]))
    run = load_run(run_dir)
    assert run.problems == []
    loss = run.metrics["loss"]
    assert loss.dtype == "float64"
    assert math.isnan(loss[1]) and loss[2] == math.inf and loss[3] == 3.0
    assert run.validation["val_loss"][0] == -math.inf
    finding = nonfinite_loss(run)
    assert finding is not None and finding.severity == "error"
    assert "2 non-finite training loss value(s), first at step 20" in finding.message
    assert "1 non-finite validation loss value(s), first at step 20" in finding.message


def test_jsonl_log_writes_nonfinite_as_strings_that_the_loader_reads_back(tmp_path):
    run_dir = tmp_path / "run"
    log = JsonlLog(RunDir(run_dir).metrics)
    log.append(metric(10, 4.0))
    log.append(metric(20, float("nan")))
    log.append({**metric(30, 3.0), "grad_norm": float("inf")})
    lines = RunDir(run_dir).metrics.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20, 30]  # every line is valid JSON
    assert json.loads(lines[1])["loss"] == "nan" and json.loads(lines[2])["grad_norm"] == "inf"
    run = load_run(run_dir)
    assert math.isnan(run.metrics["loss"][1]) and run.metrics["grad_norm"][2] == math.inf
    assert "first at step 20" in nonfinite_loss(run).message


def test_invalid_done_is_a_problem_and_the_run_is_partial(damaged_run):
    (damaged_run / "train" / "metrics.jsonl").write_text(jsonl([metric(s, v) for s, v in LOSSES.items()]))
    (damaged_run / "train" / "DONE").write_text('{"status": "compl')
    run = load_run(damaged_run)
    assert not run.done  # a damaged DONE reads as an empty, falsy record
    assert len(run.problems) == 1 and run.problems[0].startswith("train/DONE: not valid JSON")
    assert run.steps_planned == 50 and run.steps_done == 50  # from config and metrics
    assert run.status == "partial"


def test_empty_run_dir_is_not_started(tmp_path):
    run = load_run(tmp_path / "nothing")
    assert run.name == "nothing" and run.config == {}
    assert len(run.metrics) == 0 and list(run.metrics.columns)[:3] == ["step", "epoch", "loss"]
    assert run.status == "not started" and run.steps_done == 0 and run.problems == []


# --------------------------------------------------------------------------- rendering
def test_report_renders_from_a_damaged_run(damaged_run, tmp_path):
    cfg = load_resolved(damaged_run)
    assert cfg.name == "tiny" and cfg.train.steps == 50
    report_dir = tmp_path / "reports" / "tiny"
    (out,) = render(damaged_run, cfg, report_dir)
    assert out == report_dir / "report.md" and out.is_file()
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Tiny damaged run")
    assert "damaged_files" in text and "last line" in text
    assert f"{LOSSES[50]:.4f}" == "2.7183" and "2.7183" in text  # the last complete step's loss
    assert f"{LOSSES[10]:.4f} → 2.7183" in text  # summary: first → last logged
    assert f"{TORN_LOSS:.4f}" not in text  # nothing from the torn line
    assert "completed" in text and "50 of 50" in text
    assert (report_dir / "loss.png").is_file() and (report_dir / "loss.png").stat().st_size > 1000
    assert "![loss](loss.png)" in text


def test_report_renders_for_a_killed_run_without_done(tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    write_config(run_dir, steps=1000, tmp_root=tmp_path)
    write_provenance(run_dir)
    (run_dir / "train").mkdir()
    (run_dir / "train" / "metrics.jsonl").write_text(jsonl([metric(s, 5.0 - s / 100) for s in range(10, 101, 10)]))
    run = load_run(run_dir)
    assert run.status == "partial" and run.steps_done == 100
    (out,) = render(run_dir, load_resolved(run_dir), tmp_path / "report")
    text = out.read_text(encoding="utf-8")
    assert "partial" in text and "run_incomplete" in text and "100 of 1000" in text


def test_report_renders_without_provenance_or_prepared_stats(damaged_run, tmp_path):
    (damaged_run / "provenance.json").unlink()
    (damaged_run / "prepared" / "stats.json").unlink()
    (out,) = render(damaged_run, load_resolved(damaged_run), tmp_path / "report")
    assert "damaged_files" in out.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- JsonlLog.truncate_after
def test_truncate_after_drops_later_steps_and_a_torn_last_line(tmp_path):
    path = tmp_path / "train" / "metrics.jsonl"
    log = JsonlLog(path)
    for step in (10, 20, 30, 40, 50):
        log.append(metric(step, 4.0))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(metric(60, 3.0))[:30])  # torn
    log.truncate_after(30)
    text = path.read_text()
    assert text.endswith("\n")
    assert [json.loads(line)["step"] for line in text.splitlines()] == [10, 20, 30]
    log.append(metric(40, 3.5))  # resuming appends after the kept lines
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20, 30, 40]


def test_truncate_after_keeps_everything_up_to_step_but_drops_the_torn_line(tmp_path):
    path = tmp_path / "validation.jsonl"
    path.write_text(jsonl([{"step": 0, "val_loss": 5.0}, {"step": 25, "val_loss": 4.0}]) + '{"step": 50, "val_')
    JsonlLog(path).truncate_after(1000)
    assert path.read_text() == jsonl([{"step": 0, "val_loss": 5.0}, {"step": 25, "val_loss": 4.0}])


def test_truncate_after_zero_empties_the_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(jsonl([metric(10, 4.0), metric(20, 3.0)]))
    JsonlLog(path).truncate_after(0)
    assert path.read_text() == ""


def test_truncate_after_is_a_no_op_when_disabled_or_missing(tmp_path):
    path = tmp_path / "metrics.jsonl"
    original = jsonl([metric(10, 4.0), metric(20, 3.0)]) + '{"step": 3'
    path.write_text(original)
    JsonlLog(path, enabled=False).truncate_after(10)
    assert path.read_text() == original
    missing = tmp_path / "absent.jsonl"
    JsonlLog(missing).truncate_after(10)
    assert not missing.exists()
    JsonlLog(missing, enabled=False).append(metric(10, 1.0))
    assert not missing.exists()
