"""Issue #14: the run lock under real concurrent `make report`s, names in the Makefile, secrets scrubbed by value
everywhere under runs/ and reports/, file modes from the umask, and resume from the newest intact checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY, pipeline_cmd, pipeline_env, project_copy, write_experiment

from pipeline.lock import INFO_NAME, run_lock


# --------------------------------------------------------------------------- the lock, in process
def test_second_holder_is_refused_naming_the_first(tmp_path: Path):
    run = tmp_path / "runs" / "x"
    with run_lock(run, command="make report EXP=x"):
        info = json.loads((run / INFO_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "make report EXP=x"
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.lock", str(run), "--", "true"],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "LABNOTE_LOCK"},
        )
        assert proc.returncode == 2
        (line,) = proc.stderr.splitlines()
        assert line.startswith("error:") and f"pid {os.getpid()}" in line and "make report EXP=x" in line
        # A command started inside the holder (it inherits LABNOTE_LOCK) does not lock again.
        inner = subprocess.run([sys.executable, "-m", "pipeline.lock", str(run), "--", "true"], cwd=REPO)
        assert inner.returncode == 0
    assert not run.exists()  # made by the lock, nothing written into it: removed again


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path):
    run = tmp_path / "x"
    run.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / INFO_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "old"}))
    warnings = []
    with run_lock(run, warn=warnings.append):
        pass
    assert len(warnings) == 1 and f"pid {dead.pid}" in warnings[0] and "gone" in warnings[0]


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_shared_holders_coexist_but_exclude_an_exclusive_one(tmp_path: Path):
    run = tmp_path / "x"
    with run_lock(run, shared=True):
        env = {k: v for k, v in os.environ.items() if k != "LABNOTE_LOCK"}
        shared = subprocess.run([sys.executable, "-m", "pipeline.lock", str(run), "--shared", "--", "true"], env=env)
        exclusive = subprocess.run(
            [sys.executable, "-m", "pipeline.lock", str(run), "--", "true"], env=env, capture_output=True, text=True
        )
        assert shared.returncode == 0 and exclusive.returncode == 2, exclusive.stderr


# --------------------------------------------------------------------------- names in the Makefile
def make_repo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", *args, f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("args", [["-n", "clean", "EXP="], ["clean"], ["-n", "clean"], ["report", "EXP=../x"],
                                  ["report", "EXP=a b"], ["report", "EXP="], ["compare", "EXPS=smoke ../x"],
                                  ["report", "EXP=smoke", "BASELINE=../y"]])  # fmt: skip
def test_make_rejects_bad_names_before_anything(args: list[str]):
    runs = sorted(p.name for p in (REPO / "runs").iterdir()) if (REPO / "runs").is_dir() else []
    proc = make_repo(*args)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("EXP" in errors[0] or "BASELINE" in errors[0]), proc.stderr
    assert "rm -rf" not in proc.stdout and "warning" not in proc.stderr
    assert (sorted(p.name for p in (REPO / "runs").iterdir()) if (REPO / "runs").is_dir() else []) == runs


# --------------------------------------------------------------------------- two real `make report`s
def make(project: Path, *args: str, **env: str) -> subprocess.Popen:
    e = pipeline_env(**env)
    e.pop("PYTHONPATH")
    return subprocess.Popen(
        ["make", *args, f"PY={sys.executable}"], cwd=project, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("lockrepo"))
    write_experiment(root, "tiny", TINY)
    return root


@pytest.mark.slow
def test_two_make_reports_started_together(repo_copy: Path):
    a, b = make(repo_copy, "report", "EXP=tiny"), make(repo_copy, "report", "EXP=tiny")
    results = [(p.wait(timeout=900), *p.communicate()) for p in (a, b)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], [r[2][-2000:] for r in results]
    loser = next(r for r in results if r[0] == 2)
    errors = [line for line in loser[2].splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "runs/tiny is in use by pid" in errors[0] and "Traceback" not in loser[2]
    steps = [
        json.loads(line)["step"] for line in (repo_copy / "runs/tiny/train/metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 4, 6, 8, 10, 12]


@pytest.mark.slow
def test_make_report_started_while_the_first_trains(repo_copy: Path):
    # The first stops itself (SIGSTOP, the test hook) at step 4 of a retrain; the second starts then.
    first = make(repo_copy, "report", "EXP=tiny", "SET=train.lr=0.002", LABNOTE_FAULT_AT_STEP="4",
                 LABNOTE_FAULT_SIGNAL="STOP")  # fmt: skip
    deadline, stopped = time.time() + 300, []
    while time.time() < deadline and not stopped:
        stopped = [p for p in _descendants(first.pid) if _stopped(p)]
        time.sleep(0.2)
    assert stopped, "the first make report never reached step 4"
    second = make(repo_copy, "report", "EXP=tiny", "SET=train.lr=0.002")
    out, err = second.communicate(timeout=300)
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)
    assert second.returncode == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is in use by pid" in errors[0] and "make _locked_report" in errors[0], err
    f_out, f_err = first.communicate(timeout=900)
    assert first.returncode == 0, f_err[-3000:]
    steps = [
        json.loads(line)["step"] for line in (repo_copy / "runs/tiny/train/metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 4, 6, 8, 10, 12]
    val = [
        json.loads(line)["step"] for line in (repo_copy / "runs/tiny/train/validation.jsonl").read_text().splitlines()
    ]
    assert val == sorted(set(val))
    assert not (repo_copy / "runs/tiny/.lock").exists()


# --------------------------------------------------------------------------- secrets, modes, damaged checkpoints
SECRETS = {
    "url": "https://alice:pa55w0rd@hub.example.org",
    "query": "tok3nvalue42",
    "hf": "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
    "ghp": "ghp_" + "x" * 36,
    "gpat": "github_pat_" + "Y" * 40,
    "aws": "AKIA" + "ABCDEFGHIJKLMNOP",
    "openai": "sk-" + "q" * 32,
    "slack": "https://hooks.slack.com/services/T0001/B0002/secretslackpath",
    "wandb": "0123456789abcdef0123456789abcdef01234567",
    "custom": "labsecret-424242",
}


def cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        pipeline_cmd(*args), cwd=project, env=pipeline_env(**env), capture_output=True, text=True, timeout=600,
        preexec_fn=lambda: os.umask(0o002),
    )  # fmt: skip


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("secrets")
    body = yaml.safe_load(yaml.safe_dump(TINY))
    body["description"] = (
        f"pasted {SECRETS['hf']} and {SECRETS['ghp']} {SECRETS['gpat']} {SECRETS['aws']} {SECRETS['openai']} "
        f"{SECRETS['slack']} WANDB_API_KEY={SECRETS['wandb']} {SECRETS['custom']}"
    )
    body["report"] = {"title": f"run ?token={SECRETS['query']}", "redact": [r"labsecret-\d+"]}
    write_experiment(project, "tiny", body)
    env = {"HF_ENDPOINT": SECRETS["url"] + "/api", "SLURM_JOB_COMMENT": f"token={SECRETS['query']}"}
    submit = ["submit", "tiny", "--dry-run", "--set", f"hpc.setup=[{SECRETS['url']}]"]
    for args in (["resolve", "tiny"], ["prepare", "runs/tiny"], ["train", "runs/tiny"], ["eval", "runs/tiny"],
                 ["report", "runs/tiny"], submit):  # fmt: skip
        proc = cli(project, *args, **env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return project


@pytest.mark.slow
def test_no_planted_secret_anywhere(secret_run: Path):
    files = [p for d in ("runs", "reports") for p in (secret_run / d).rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sh") for p in files) and any(p.name == "report.md" for p in files)
    for path in files:
        data = path.read_bytes()
        for kind, secret in SECRETS.items():
            assert secret.encode() not in data, f"{kind} secret in {path}"
    assert "[redacted]" in (secret_run / "runs/tiny/provenance.json").read_text()
    assert "[redacted]" in (secret_run / "reports/tiny/report.md").read_text()


@pytest.mark.slow
def test_files_follow_the_umask(secret_run: Path):
    for rel in ("runs/tiny/config.yaml", "runs/tiny/provenance.json", "runs/tiny/train/DONE",
                "reports/tiny/report.md"):  # fmt: skip
        mode = (secret_run / rel).stat().st_mode & 0o777
        assert mode == 0o664, (rel, oct(mode))


@pytest.mark.slow
def test_corrupt_newest_checkpoint_resumes_from_the_previous(secret_run: Path):
    run = secret_run / "runs" / "tiny"
    steps = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == ["0000000010", "0000000012"]
    weights = run / "checkpoints" / steps[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    (run / "train" / "DONE").unlink()
    proc = cli(secret_run, "train", "runs/tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((run / "train" / "DONE").read_text())
    assert done["resumed_from"] == 10 and done["status"] == "completed"
    assert any("0000000012" in r and "model.safetensors" in r for r in done["repairs"]), done["repairs"]
    assert (run / "checkpoints" / "0000000012.damaged").is_dir() and (run / "checkpoints" / "0000000012").is_dir()
    steps = [json.loads(line)["step"] for line in (run / "train" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]


@pytest.mark.parametrize("which", ["last", "best", 10])
def test_eval_refuses_a_damaged_checkpoint(tmp_path: Path, which):
    """The eval stage picks its checkpoint through its checksums: a changed file is one error naming it."""
    from pipeline.errors import DataError
    from pipeline.evaluate.perplexity import pick_checkpoint
    from pipeline.rundir import RunDir
    from pipeline.train.checkpoint import write_checksums

    run = RunDir(tmp_path / "runs" / "x")
    for name in ("0000000010", "best"):
        folder = run.checkpoints / name
        folder.mkdir(parents=True)
        (folder / "train_state.pt").write_bytes(b"state")
        (folder / "model.safetensors").write_bytes(b"weights" * 100)
        write_checksums(folder)
    chosen = pick_checkpoint(run, which)
    assert chosen.name == ("best" if which == "best" else "0000000010")
    weights = chosen / "model.safetensors"
    weights.write_bytes(b"X" + weights.read_bytes()[1:])  # same size, one byte changed, written later
    later = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))
    with pytest.raises(DataError, match=r"model\.safetensors does not match its sha256: the checkpoint is damaged"):
        pick_checkpoint(run, which)
