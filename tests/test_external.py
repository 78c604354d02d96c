"""`train.command`: your own trainer as the train stage (pipeline/train/external.py), with a real command — a
stdlib-only trainer (tests/byo_toy_trainer.py) that starts in milliseconds — through the real stages: placeholders,
the stamp, the jsonl importer, a crash at step 20 of 40, SIGTERM and the rerun, `make peek` while it runs, a
command that is not found, logs that never appear, the exact podman command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, pipeline_cmd, pipeline_env, project_copy, write_experiment

TOY = REPO / "tests" / "byo_toy_trainer.py"
BYO = {
    "description": "a toy trainer of our own",
    "train": {
        "steps": 40,
        "lr": 0.1,
        "command": "python toy.py --steps {train.steps} --lr {train.lr} --out {run}/external",
        "logs": {"from": "jsonl", "path": "{run}/external/metrics.jsonl"},
    },
}


def project(tmp_path: Path, command: str | None = None, **train) -> Path:
    shutil.copy(TOY, tmp_path / "toy.py")
    body = json.loads(json.dumps(BYO))
    if command:
        body["train"]["command"] = command
    body["train"].update(train)
    write_experiment(tmp_path, "byo", body)
    return tmp_path


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        pipeline_cmd(*args), cwd=root, env=pipeline_env(), capture_output=True, text=True, timeout=300
    )


def resolve_and_train(root: Path) -> subprocess.CompletedProcess:
    assert run(root, "resolve", "byo").returncode == 0
    return run(root, "train", "runs/byo")


def wait_for(predicate, what: str, timeout: float = 120.0):
    """Poll a file's content (never a fixed sleep): the stage and its command run at their own pace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def logged_step(path: Path) -> int:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if line.endswith("}")]
    return max(steps, default=0)


# --------------------------------------------------------------------------- config
def test_placeholders_are_filled_quoted_and_hashed(tmp_path, monkeypatch):
    from pipeline.config.load import load_experiment
    from pipeline.stages import stage_hashes
    from pipeline.train.external import Expanded

    monkeypatch.chdir(project(tmp_path))
    cfg = load_experiment("byo")
    exp = Expanded(cfg)
    assert exp.command == "python toy.py --steps 40 --lr 0.1 --out runs/byo/external"
    assert exp.logs == "runs/byo/external/metrics.jsonl" and exp.values["train.lr"] == 0.1
    assert cfg.active_stages == ["train"] and cfg.data.source.type == "command"  # no model or data section needed
    titled = ["report.title='it is {x}'", "train.command='python toy.py --t {report.title} {exp} {seed}'"]
    quoted = Expanded(load_experiment("byo", titled))
    assert quoted.command == "python toy.py --t 'it is {x}' byo 0"
    base = stage_hashes(cfg)
    lr = stage_hashes(load_experiment("byo", ["train.lr=0.2"]))
    spec = stage_hashes(load_experiment("byo", ["train.command='python toy.py --lr {train.lr:.0e}'"]))
    assert len({base["train"], lr["train"], spec["train"]}) == 3
    assert lr["prepare"] == base["prepare"]  # the command does not hash a prepare stage it does not have


@pytest.mark.parametrize(
    "command, message",
    [
        ("python toy.py --lr {train.lrr}", "train.command: unknown placeholder {train.lrr}; use {run}, {exp}, {seed}"),
        ("python toy.py {", "train.command: Single '{' encountered in format string"),
        ("python toy.py --e {train.epochs}", "train.command: placeholder {train.epochs}: train.epochs has no value"),
    ],
)
def test_a_bad_placeholder_is_one_line_and_exit_2(tmp_path, command, message):
    root = project(tmp_path, command)
    proc = run(root, "resolve", "byo")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: experiments/byo.yaml: " + message)
    assert not (root / "runs").exists()


def test_the_jsonl_importer_reads_our_keys_and_keeps_the_rest(tmp_path):
    from pipeline.importers import read_source

    log = tmp_path / "m.jsonl"
    log.write_text(
        '{"step": 1, "loss": 4.0, "tokens": 512.0, "mine": 7, "note": "hi"}\n'
        '{"step": 2, "loss": 3.5, "val_loss": 3.9, "epoch": 0.5}\n{"step": 3, "lo'
    )
    imp = read_source(log, "jsonl")
    assert imp.metrics == [{"step": 1, "loss": 4.0, "tokens": 512, "segment": 0},
                           {"step": 2, "loss": 3.5, "epoch": 0.5, "segment": 0}]  # fmt: skip
    assert imp.validation == [{"step": 2, "epoch": 0.5, "val_loss": 3.9}]
    assert imp.extra == [{"step": 1, "source": "train", "mine": 7}] and imp.not_carried == {"note (text)": 1}
    assert imp.done == 2 and imp.warnings == [
        "m.jsonl:3: last line is cut off (the job was killed while writing?); skipped"
    ]


# --------------------------------------------------------------------------- the stage
@pytest.mark.slow
def test_a_crash_at_step_20_of_40_is_a_failed_report(tmp_path):
    root = project(tmp_path, "python toy.py --steps {train.steps} --crash-at 20 --out {run}/external")
    proc = resolve_and_train(root)
    assert proc.returncode == 0, proc.stderr  # the failure is recorded for the report, which fails
    done = json.loads((root / "runs/byo/train/DONE").read_text())
    assert (done["status"], done["exit_code"], done["steps_done"], done["steps_planned"]) == ("failed", 3, 20, 40)
    assert (root / "runs/byo/train/stdout.log").read_text() == "starting after step 0\n"
    report = run(root, "report", "runs/byo")
    assert report.returncode == 1
    assert report.stderr.strip().endswith(
        "error: train.command exited with code 3 after 20 of 40 steps; the report says so: reports/byo/report.md"
    )
    text = (root / "reports/byo/report.md").read_text()
    assert "**Status: ❌ failed** — 20 of 40 configured steps" in text
    assert "`command_failed` | train.command exited with code 3 after 20 of 40 steps; last stderr line: " in text
    assert "`ValueError: loss exploded at step 20`" in text and "| Exit code | 3 |" in text
    prov = json.loads((root / "runs/byo/provenance.json").read_text())
    assert prov["train_command"]["exit_code"] == 3
    assert prov["train_command"]["command"] == "python toy.py --steps 40 --crash-at 20 --out runs/byo/external"
    assert prov["stages"]["train"]["launches"][-1]["exit_code"] == 3
    # The next resolve makes Make run the command again instead of taking the failed DONE as done.
    assert run(root, "resolve", "byo").returncode == 0
    assert "DEPS_train := FORCE" in (root / "runs/byo/stamps/targets.mk").read_text()
    # Other train inputs: the earlier outputs and the command's own folder move aside, and it starts from scratch.
    assert run(root, "resolve", "byo", "--set", "train.lr=0.2").returncode == 0
    assert run(root, "train", "runs/byo").returncode == 0
    (archived,) = (root / "runs/byo/archive").iterdir()
    assert sorted(p.name for p in archived.iterdir()) == ["external", "train"]
    assert len((archived / "external/launches.txt").read_text().splitlines()) == 1
    assert (root / "runs/byo/train/stdout.log").read_text() == "starting after step 0\n"


@pytest.mark.slow
def test_sigterm_reaches_the_command_143_and_a_rerun_continues(tmp_path):
    root = project(tmp_path, "python toy.py --steps {train.steps} --pause-at 12 --out {run}/external")
    assert run(root, "resolve", "byo").returncode == 0
    stage = subprocess.Popen(pipeline_cmd("train", "runs/byo"), cwd=root, env=pipeline_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ext = root / "runs/byo/external"
    wait_for(lambda: logged_step(ext / "metrics.jsonl") == 12, "step 12 in the command's log")
    toy_pid = int((ext / "pid").read_text())
    stage.send_signal(signal.SIGTERM)
    _, err = stage.communicate(timeout=120)
    assert stage.returncode == 143, err
    with pytest.raises(ProcessLookupError):
        os.kill(toy_pid, 0)  # the signal reached the command's process group
    assert not (root / "runs/byo/train/DONE").exists()
    assert [json.loads(line)["step"] for line in (root / "runs/byo/train/metrics.jsonl").read_text().splitlines()] == [
        *range(1, 13)
    ]
    prov = json.loads((root / "runs/byo/provenance.json").read_text())
    assert prov["stages"]["train"]["launches"][-1]["exit_code"] == 143  # bash's 128 + 15

    again = run(root, "train", "runs/byo")
    assert again.returncode == 0, again.stderr
    launches = (ext / "launches.txt").read_text().splitlines()
    assert len(launches) == 2 and launches[0] == launches[1]  # the same {run}: the script resumes from its folder
    rows = [json.loads(line) for line in (root / "runs/byo/train/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))
    done = json.loads((root / "runs/byo/train/DONE").read_text())
    assert (done["status"], done["steps_done"], done["exit_code"]) == ("completed", 40, 0)
    assert "starting after step 12" in (root / "runs/byo/train/stdout.log").read_text()


@pytest.mark.slow
def test_peek_shows_running_with_the_steps_so_far_and_touches_nothing(tmp_path):
    root = project(tmp_path, "python toy.py --steps {train.steps} --pause-at 10 --out {run}/external")
    assert run(root, "resolve", "byo").returncode == 0
    stage = subprocess.Popen(pipeline_cmd("train", "runs/byo"), cwd=root, env=pipeline_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: logged_step(root / "runs/byo/train/metrics.jsonl") == 10, "step 10 in train/metrics.jsonl")
        stamps = {p.name: p.stat().st_mtime_ns for p in (root / "runs/byo/stamps").iterdir()}
        lock_info = (root / "runs/byo/.lock.info").read_text()
        peek = run(root, "peek", "runs/byo", "--out", "reports/byo/peek")
        assert peek.returncode == 0, peek.stderr
        text = (root / "reports/byo/peek/report.md").read_text()
        assert "**Status: ⏳ running** — 10 of 40 configured steps" in text
        assert "| Exit code | — (still running, or stopped before it ended) |" in text
        assert stamps == {p.name: p.stat().st_mtime_ns for p in (root / "runs/byo/stamps").iterdir()}
        assert (root / "runs/byo/.lock.info").read_text() == lock_info  # the stage still holds its lock
        assert not (root / "reports/byo/report.md").exists() and stage.poll() is None
    finally:
        (root / "runs/byo/external/resume").touch()
        _, err = stage.communicate(timeout=120)
    assert stage.returncode == 0, err
    run(root, "peek", "runs/byo", "--out", "reports/byo/peek")
    assert "**Status: ✅ completed** — 40 of 40" in (root / "reports/byo/peek/report.md").read_text()


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_a_command_that_is_not_found_is_one_line(tmp_path):
    root = project(tmp_path, "LR={train.lr} no-such-trainer --out {run}")
    proc = resolve_and_train(root)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "error: train.command: no-such-trainer: command not found on PATH (the stage's environment first)"
    )
    assert not (root / "runs/byo/train/DONE").exists()


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_logs_that_never_appear_are_one_line(tmp_path):
    root = project(tmp_path, "python -c pass")
    proc = resolve_and_train(root)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "error: train.logs.path: runs/byo/external/metrics.jsonl: the command exited 0 but no logs appeared there"
    )


@pytest.mark.slow
def test_the_script_of_another_repository_is_in_provenance(tmp_path):
    other = tmp_path / "their-repo"
    other.mkdir()
    shutil.copy(TOY, other / "train.py")
    git = ["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "theirs"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "proj").mkdir()
    root = project(tmp_path / "proj", f"python {other}/train.py --steps 5 --out {{run}}/external")
    assert resolve_and_train(root).returncode == 0
    prov = json.loads((root / "runs/byo/provenance.json").read_text())
    script = prov["train_command"]["script_git"]
    assert script["script"] == f"{other}/train.py" and script["repository"] == str(other.resolve())
    assert (script["commit"], script["dirty"]) == (commit, False)


@pytest.mark.slow
def test_podman_runs_the_train_stage_in_the_container(tmp_path):
    """The same Make recipe under RUNTIME=podman: `python -m pipeline train` runs inside the image, and it starts
    the command there (dry run: podman is not installed here)."""
    root = project_copy(tmp_path)
    assert subprocess.run(pipeline_cmd("resolve", "byo_plain"), cwd=root, env=pipeline_env()).returncode == 0
    proc = subprocess.run(
        ["make", "-n", "report", "EXP=byo_plain", "RUNTIME=podman", "IMAGE=labnote:test"],
        cwd=root, env=pipeline_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "python -m pipeline" in line or "--entrypoint" in line]
    stages = [line.split(" labnote:test -m pipeline ")[1].split()[0] for line in lines]
    assert stages == ["resolve", "train", "report"]  # no prepare, no eval: the command has its own data
    env = ("HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "HF_HUB_DISABLE_PROGRESS_BARS=1", "MPLBACKEND=Agg",
           "LABNOTE_LOCK=${LABNOTE_LOCK:-}")  # fmt: skip
    offline = " ".join(f"-e {e}" for e in env)
    assert lines[1] == (
        f"podman run --rm --device nvidia.com/gpu=all --ipc=host -v {root}:{root} -w {root}  {offline} "
        "-e LABNOTE_IMAGE=labnote:test --entrypoint python labnote:test -m pipeline train runs/byo_plain"
    )
    cfg = yaml.safe_load((root / "runs/byo_plain/config.yaml").read_text())
    assert cfg["train"]["logs"] == {"from": "jsonl", "path": "{run}/external/metrics.jsonl"}


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_the_examples_validate(tmp_path):
    for name in ("byo_plain", "byo_hf_trainer", "byo_lightning"):
        proc = subprocess.run(pipeline_cmd("resolve", name, "--check"), cwd=REPO, env=pipeline_env(),
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0 and proc.stdout == f"{name}: ok\n", proc.stderr


def test_eval_runs_only_for_a_checkpoint_and_never_on_a_failed_command(tmp_path, monkeypatch):
    from pipeline import records
    from pipeline.config.load import load_experiment
    from pipeline.errors import UserError
    from pipeline.evaluate.stage import run_eval
    from pipeline.stages import run_targets

    monkeypatch.chdir(project(tmp_path))
    assert load_experiment("byo").active_stages == ["train"]
    cfg = load_experiment("byo", ["train.checkpoint={run}/external/final"])
    assert cfg.active_stages == ["train", "eval"]
    assert "DEPS_eval := $(RUN)/train/DONE" in run_targets(cfg)
    run = Path("runs/byo")  # as Make names it (the working directory is the project)
    records.TRAIN_DONE.write(run, {"status": "completed", "steps_done": 40, "external": True})
    with pytest.raises(UserError, match=r"^train.checkpoint: runs/byo/external/final: no Hugging Face model folder"):
        run_eval(cfg, run)
    records.TRAIN_DONE.write(run, {"status": "failed", "steps_done": 20, "external": True, "exit_code": 3})
    run_eval(cfg, run)
    assert records.EVAL_DONE.read(run).status == "skipped"
    with pytest.raises(Exception, match="stages: 'eval' needs train.checkpoint"):
        load_experiment("byo", ["stages=[train,eval]"])
