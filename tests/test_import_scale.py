"""Imports at length (issue 17): the synthetic sources of benchmarks/synthetic_sources.py import whole, the raw
TensorBoard reader agrees with TensorBoard's own and checks its CRCs, secrets are still scrubbed when a pattern is
skipped for lack of its needles. Speed is the benchmark's (benchmarks/import_scale.py), never asserted here."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from pipeline import records, redact
from pipeline.importers import run_import
from pipeline.importers.common import SourceError

sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    (tmp_path / "experiments").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def tb_events(path: Path, steps: int, tags=("train/loss", "train/learning_rate")) -> Path:
    """An event file written by TensorBoard's own writer (no torch): `steps` events of one scalar per tag."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(path))
    for step in range(1, steps + 1):
        values = [summary_pb2.Summary.Value(tag=t, simple_value=1.0 / (step + i)) for i, t in enumerate(tags)]
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0e9 + step, summary=summary_pb2.Summary(value=values)))
    writer.close()
    (file,) = path.glob("events.out.tfevents.*")
    return file


def test_raw_event_reader_equals_tensorboards_own(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    from pipeline.importers.tensorboard import read_events

    file = tb_events(tmp_path, 300)
    scalars, texts, other, torn = read_events(file)
    theirs = [
        (e.step, v.tag, float(tensor_util.make_ndarray(v.tensor).item()))
        for e in EventFileLoader(str(file)).Load()
        for v in e.summary.value
    ]
    assert scalars == theirs and len(scalars) == 600 and not torn and texts == {} and other == []


def test_crc_equals_tensorboards(tmp_path):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as theirs

    from pipeline.importers.tensorboard import masked_crc32c

    rng = random.Random(0)
    data = bytes(rng.randrange(256) for _ in range(5000))
    starts = np.array([0, 7, 100, 1000, 4990, 3], dtype=np.int64)
    lengths = np.array([0, 1, 333, 2000, 10, 4997], dtype=np.int64)
    ours = masked_crc32c(np.frombuffer(data, dtype=np.uint8), starts, lengths)
    assert ours.tolist() == [theirs(data[s : s + n]) for s, n in zip(starts, lengths)]


def test_torn_event_file_is_a_warning_and_a_damaged_one_an_error(workdir):
    folder = workdir / "tb"
    file = tb_events(folder, 50)
    data = file.read_bytes()
    file.write_bytes(data[:-5])  # the writer killed inside its last record
    run = run_import(folder, "tensorboard", "torn_tb")
    record = json.loads(records.IMPORT.at(run).read_text())
    assert [r["step"] for r in lines(run / "train" / "metrics.jsonl")] == list(range(1, 50))
    assert any("last record is cut off" in w for w in record["warnings"])

    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01  # one flipped bit in the middle of an event
    file.write_bytes(bytes(damaged))
    with pytest.raises(SourceError, match=rf"{file.name}: record \d+ \(byte \d+\): its data fails its CRC"):
        run_import(folder, "tensorboard", "bad_tb")


SECRETS = [
    "https://user:pw@hub.example.org/x",
    "TOKEN=abc123",
    "x_api_KEY='q1'",
    "Api-Key: zz9",
    "ACCESS_TOKEN: a1",
    "client_secret: s3",
    "PassWord: x",
    "hf_" + "a" * 25,
    "github_pat_" + "b" * 25,
    "ghp_" + "c" * 31,
    "AKIA" + "D" * 16,
    "sk-proj-" + "e" * 22,
    "https://hooks.slack.com/services/T0/B0/x",
    "xoxb-1234567890",
    "WANDB_API_KEY=" + "f" * 40,
    "local-" + "0" * 40,
]


@pytest.mark.parametrize("secret", SECRETS)
def test_scrub_with_needles_equals_every_pattern_run(secret):
    text = '{"step": 1, "note": "' + secret + '"}\n' + '{"step": 2, "loss": 1.5}\n' * 3
    every = text
    for pattern, repl, _needles in redact.BUILTIN:
        every = pattern.sub(repl, every)
    assert redact.scrub(text) == every != text


def test_scrub_outside_ascii_runs_every_pattern():
    # (?i) matches the long s (U+017F) as "s": no lower-case needle would find "ſecret", so every pattern runs
    assert redact.scrub("client_ſecret: hunter2") == "client_ſecret: " + redact.MARK


@pytest.mark.slow  # the tools' own writers (transformers, pytorch_lightning, torch's SummaryWriter): ~20 s loaded
def test_synthetic_sources_import_whole(workdir):
    import synthetic_sources as synth

    n = 500
    for source, (fmt, write) in synth.WRITERS.items():
        if source == "wandb":  # a wandb subprocess: its importer is covered by tests/test_import_real_tools.py
            continue
        run = run_import(write(workdir / "src" / source, n), fmt, source.replace("-", "_"))
        if source == "lm-eval":
            (piqa,) = [r for r in lines(run / "eval" / "tasks.jsonl") if r["task"] == "piqa"]
            samples = json.loads((run / "eval" / "harness_timing.json").read_text())["samples"]["piqa"]
            assert samples["acc,none"]["items"] == n and piqa["value"] is not None
            continue
        metrics = lines(run / "train" / "metrics.jsonl")
        steps = [r["step"] for r in metrics]
        assert steps == sorted(set(steps)) and all(r["loss"] is not None for r in metrics), source
        validation = lines(run / "train" / "validation.jsonl")
        history = synth.hf_log_history(n)
        hf = (sum("loss" in e for e in history), sum("eval_loss" in e for e in history))
        expected = {  # rows per the generator's pattern: an evaluation every 10th entry
            "hf-trainer": hf,
            "tensorboard": hf,
            "lightning": (len([i for i in range(n) if i % 10 != 9 and i % 2 == 1]), n // 10),
            "lingua": (n, 0),
            "lingua-stdout": (n, 0),
        }[source]
        assert (len(metrics), len(validation)) == expected, source
        assert json.loads((run / "train" / "DONE").read_text())["segments"] == 1, source
