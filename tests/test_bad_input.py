"""The malformed corpus: configs, SET values, names, damaged run files, disk and permission faults.

Every case must end with exit code 2, exactly one `error:` line naming the key or file, no traceback, and a
pre-existing run (`runs/tiny`, resolved and prepared) byte-for-byte untouched. Most cases call the CLI in
this process (fast); the file-system faults run it in a subprocess over a tmpfs or a read-only bind mount
(root only; skipped with the reason elsewhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY, pipeline_cmd, pipeline_env, write_experiment

from pipeline.cli import main


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    write_experiment(root, "tiny", TINY)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["resolve", "tiny"]) == 0
        assert main(["prepare", "runs/tiny"]) == 0
    finally:
        os.chdir(cwd)
    return root


def tiny_with(**sections) -> dict:
    body = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in sections.items():
        node = body
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return body


def dump(body) -> bytes:
    return yaml.safe_dump(body, sort_keys=False).encode()


TINY_YAML = dump(TINY).decode()

# (id, files to write relative to the project, argv, text the one error line must contain)
CONFIG_CASES = [
    ("latin1", {"experiments/bad.yaml": "description: caf\xe9\n".encode("latin-1")}, "not UTF-8 text"),
    ("utf16", {"experiments/bad.yaml": "description: x\n".encode("utf-16")}, "not UTF-8 text"),
    ("dup_section", {"experiments/bad.yaml": TINY_YAML + "train:\n  steps: 3\n"}, "duplicate key 'train'"),
    ("dup_nested", {"experiments/bad.yaml": "train:\n  steps: 3\n  lr: 0.1\n  steps: 4\n"}, "duplicate key 'steps'"),
    ("dup_flow", {"experiments/bad.yaml": "train: {steps: 3, steps: 4}\n"}, "duplicate key 'steps'"),
    ("yaml_syntax", {"experiments/bad.yaml": "train: [steps: 3\n"}, "invalid YAML"),
    ("yaml_tab", {"experiments/bad.yaml": "train:\n\tsteps: 3\n"}, "invalid YAML"),
    ("top_list", {"experiments/bad.yaml": "- a\n- b\n"}, "expected a mapping"),
    ("top_scalar", {"experiments/bad.yaml": "hello\n"}, "expected a mapping"),
    ("unknown_section", {"experiments/bad.yaml": dump({**TINY, "trian": {"steps": 3}})}, "trian"),
    ("unknown_key", {"experiments/bad.yaml": dump(tiny_with(train__stpes=3))}, "train.stpes"),
    ("lr_string", {"experiments/bad.yaml": dump(tiny_with(train__lr="fast"))}, "train.lr"),
    ("steps_negative", {"experiments/bad.yaml": dump(tiny_with(train__steps=-5))}, "train.steps"),
    ("steps_float", {"experiments/bad.yaml": dump(tiny_with(train__steps=1.5))}, "train.steps"),
    ("steps_inf", {"experiments/bad.yaml": dump(tiny_with(train__steps=float("inf")))}, "train.steps"),
    ("arch_unknown", {"experiments/bad.yaml": dump(tiny_with(model__arch="transformer9"))}, "model.arch"),
    ("model_scalar", {"experiments/bad.yaml": dump({**TINY, "model": 5})}, "model"),
    ("source_type", {"experiments/bad.yaml": dump(tiny_with(data__source={"type": "ftp"}))}, "data.source"),
    ("source_no_type", {"experiments/bad.yaml": dump(tiny_with(data__source={"name": "kjv"}))}, "data.source"),
    ("tokenizer_type", {"experiments/bad.yaml": dump(tiny_with(data__tokenizer={"type": "sp"}))}, "data.tokenizer"),
    ("seq_len_too_long", {"experiments/bad.yaml": dump(tiny_with(data__seq_len=512))}, "data.seq_len"),
    ("device_unknown", {"experiments/bad.yaml": dump(tiny_with(train__device="tpu"))}, "train.device"),
    ("precision_unknown", {"experiments/bad.yaml": dump(tiny_with(train__precision="fp8"))}, "train.precision"),
    ("description_list", {"experiments/bad.yaml": dump({**TINY, "description": [1, 2]})}, "description"),
    ("language", {"experiments/bad.yaml": dump(tiny_with(report__language="xx"))}, "report.language"),
    ("compare_to_path", {"experiments/bad.yaml": dump(tiny_with(report__compare_to="../etc"))}, "report.compare_to"),
    ("redact_regex", {"experiments/bad.yaml": dump(tiny_with(report__redact=["(unclosed"]))}, "report.redact"),
    ("stages_unknown", {"experiments/bad.yaml": dump({**TINY, "stages": ["cook"]})}, "stages"),
    ("extends_missing", {"experiments/bad.yaml": "extends: nothere\n"}, "extends"),
    ("extends_list", {"experiments/bad.yaml": "extends: [a, b]\n"}, "extends"),
    ("extends_path", {"experiments/bad.yaml": "extends: ../../etc/passwd\n"}, "extends"),
    (
        "extends_cycle",
        {"experiments/bad.yaml": "extends: bad2\n", "experiments/bad2.yaml": "extends: bad\n"},
        "cycle",
    ),
    (
        "files_missing",
        {"experiments/bad.yaml": dump(tiny_with(data__source={"type": "files", "train": ["nope.txt"]}))},
        "nope.txt",
    ),
    (
        "task_typo",
        {"experiments/bad.yaml": dump(tiny_with(eval__harness={"tasks": ["labnote_clzoe"]}))},
        "did you mean 'labnote_cloze'",
    ),
    (
        "include_path_missing",
        {"experiments/bad.yaml": dump(tiny_with(eval__harness={"tasks": ["x"], "include_path": ["no/dir"]}))},
        "eval.harness.include_path",
    ),
    (
        "flash_attention",
        {"experiments/bad.yaml": dump(tiny_with(model__attn_implementation="flash_attention_2"))},
        "model.attn_implementation",
    ),
    (
        "tokenizer_dir_missing",
        {"experiments/bad.yaml": dump(tiny_with(data__tokenizer={"type": "pretrained", "path": "./no-tok"}))},
        "data.tokenizer.path",
    ),
    ("hpc_nodes_zero", {"experiments/bad.yaml": dump(tiny_with(hpc__nodes=0))}, "hpc.nodes"),
    ("sweep_unknown_key", {"experiments/bad.yaml": dump(tiny_with(sweep={"grid": {"train.lrr": [1]}}))}, "train.lrr"),
    (
        "sweep_zip_lengths",
        {"experiments/bad.yaml": dump(tiny_with(sweep={"zip": {"train.lr": [1e-3, 2e-3], "train.steps": [4]}}))},
        "sweep.zip.train.lr",
    ),
    (
        "sweep_bad_value",
        {"experiments/bad.yaml": dump(tiny_with(sweep={"grid": {"train.batch_size": [2, "many"]}}))},
        "train.batch_size",
    ),
    ("missing_file", {}, "experiments/bad.yaml"),
]

SET_CASES = [
    ("set_apostrophe", ["report.title=Bob's run"], "SET"),
    ("set_open_quote", ['report.title="unfinished'], "SET"),
    ("set_no_equals", ["train.lr"], "SET"),
    ("set_empty_key", ["=5"], "SET"),
    ("set_empty_part", ["train..lr=1"], "SET"),
    ("set_lr_string", ["train.lr=fast"], "train.lr"),
    ("set_conflict", ["train.lr=1 train.lr.x=2"], "train.lr"),
    ("set_unknown", ["train.unknown=1"], "train.unknown"),
    ("set_seq_len", ["model.max_seq_len=16"], "data.seq_len"),
    ("set_files_missing", ["data.source.type=files data.source.train=[nope.txt]"], "nope.txt"),
    ("set_compare_path", ["report.compare_to=../etc"], "report.compare_to"),
    ("set_steps_list", ["train.steps=[1,2]"], "train.steps"),
    ("set_dup_flow", ['train="{steps: 1, steps: 2}"'], "duplicate key 'steps'"),
    ("set_task_typo", ["eval.harness.tasks=[labnote_rollin]"], "labnote_rolling"),
    ("set_seeds_twice", ["repeat.seeds=[1,1]"], "repeat.seeds"),
]

NAME_CASES = [
    ("name_parent", ["resolve", "../x"], "EXP"),
    ("name_space", ["resolve", "a b"], "EXP"),
    ("name_empty", ["resolve", ""], "EXP"),
    ("name_hidden", ["resolve", ".hidden"], "EXP"),
    ("name_check", ["resolve", "../x", "--check"], "EXP"),
    ("name_data", ["data", "a/b"], "EXP"),
    ("name_index", ["index", "tiny", "../b"], "EXPS"),
    ("name_compare_out", ["index", "tiny", "tiny", "--name", "../x"], "NAME"),
    ("name_import", ["import", "src", "--from", "lingua", "--exp", "../x"], "EXP"),
    ("name_stage_dir", ["train", "runs/../.."], "run directory"),
    ("name_report_out", ["report", "runs/tiny", "--out", "reports/.."], "report directory"),
    ("argparse_command", ["cook"], "invalid choice"),
    ("argparse_missing", ["resolve"], "experiment"),
    ("bench_part_index", ["bench-part", "runs/tiny", "three"], "INDEX"),
    ("member_unknown", ["resolve", "tiny", "--set", "repeat.seeds=[0]", "--member", "seed-3"], "MEMBER"),
    ("aggregate_no_members", ["aggregate", "runs/tiny"], "members.json"),
]


def run_main(project: Path, argv: list[str], capsys) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(project)
    try:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    finally:
        os.chdir(cwd)
    return code, capsys.readouterr().err


def assert_one_clean_error(code: int, err: str, names: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and names in errors[0], err


def _write(project: Path, files: dict) -> list[Path]:
    written = []
    for rel, content in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        written.append(path)
    return written


@pytest.mark.parametrize("files, names", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(project: Path, capsys, files: dict, names: str):
    before = snapshot(project / "runs")
    written = _write(project, files)
    try:
        code, err = run_main(project, ["resolve", "bad"], capsys)
    finally:
        for path in written:
            path.unlink()
    assert_one_clean_error(code, err, names)
    assert snapshot(project / "runs") == before
    assert not (project / "runs" / "bad").exists()


@pytest.mark.parametrize("sets, names", [c[1:] for c in SET_CASES], ids=[c[0] for c in SET_CASES])
def test_bad_set(project: Path, capsys, sets: list[str], names: str):
    before = snapshot(project / "runs")
    code, err = run_main(project, ["resolve", "tiny", *(a for s in sets for a in ("--set", s))], capsys)
    assert_one_clean_error(code, err, names)
    assert snapshot(project / "runs") == before


@pytest.mark.parametrize("argv, names", [c[1:] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_bad_name(project: Path, capsys, argv: list[str], names: str):
    before = snapshot(project)
    code, err = run_main(project, argv, capsys)
    assert_one_clean_error(code, err, names)
    assert snapshot(project) == before


def _damage_config(run: Path) -> None:
    (run / "config.yaml").write_text("model: [unclosed\n")


def _damage_config_latin1(run: Path) -> None:
    (run / "config.yaml").write_bytes("description: caf\xe9\n".encode("latin-1"))


def _no_config(run: Path) -> None:
    (run / "config.yaml").unlink()


def _truncate_train_npy(run: Path) -> None:
    path = run / "prepared" / "train.npy"
    path.write_bytes(path.read_bytes()[:200])


def _missing_validation_npy(run: Path) -> None:
    (run / "prepared" / "validation.npy").unlink()


def _garbage_train_npy(run: Path) -> None:
    (run / "prepared" / "train.npy").write_bytes(b"\x00" * 64)


DAMAGE_CASES = [
    ("config_yaml_broken", _damage_config, "train", "config.yaml"),
    ("config_yaml_latin1", _damage_config_latin1, "train", "config.yaml"),
    ("config_yaml_missing", _no_config, "train", "config.yaml"),
    ("train_npy_truncated", _truncate_train_npy, "train", "train.npy"),
    ("train_npy_garbage", _garbage_train_npy, "train", "train.npy"),
    ("validation_npy_missing", _missing_validation_npy, "train", "validation.npy"),
]


@pytest.mark.parametrize("damage, stage, names", [c[1:] for c in DAMAGE_CASES], ids=[c[0] for c in DAMAGE_CASES])
def test_damaged_run(project: Path, capsys, damage, stage: str, names: str):
    before = snapshot(project / "runs" / "tiny")
    copy = project / "runs" / "dmg"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(project / "runs" / "tiny", copy)
    damage(copy)
    try:
        code, err = run_main(project, [stage, "runs/dmg"], capsys)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    assert_one_clean_error(code, err, names)
    assert snapshot(project / "runs" / "tiny") == before


# --------------------------------------------------------------------------- file-system faults (root)
def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def fs_project(tmp_path: Path):
    """A project whose runs/ is a mount point; yields (root, mount helper)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs or a read-only bind mount")
    root = tmp_path / "p"
    write_experiment(root, "tiny", TINY)
    (root / "runs").mkdir()
    mounted: list[Path] = []

    def mount(*args: str, at: Path) -> None:
        if not _mount(*args, str(at)):
            pytest.skip(f"mount {' '.join(args)} is not permitted here")
        mounted.append(at)

    yield root, mount
    for at in reversed(mounted):
        subprocess.run(["umount", "-l", str(at)], capture_output=True)


def cli(root: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = pipeline_cmd(*args)
    if user:
        cmd = ["setpriv", "--reuid", user, "--regid", "nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=root, env=pipeline_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_disk_full_preflight(fs_project):
    root, mount = fs_project
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", at=root / "runs")
    proc = cli(root, "resolve", "tiny", "--set", "model.dim=512 model.layers=4 data.tokenizer.vocab_size=4096")
    assert_one_clean_error(proc.returncode, proc.stderr, "no space left on device")
    assert "need ≈" in proc.stderr and not any((root / "runs").iterdir())


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_disk_full_while_writing(fs_project):
    root, mount = fs_project
    mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", at=root / "runs")
    (root / "experiments" / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "description": "x" * 200_000}))
    proc = cli(root, "resolve", "tiny")
    assert_one_clean_error(proc.returncode, proc.stderr, "no space left on device")


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_read_only_runs(fs_project):
    root, mount = fs_project
    assert cli(root, "resolve", "tiny").returncode == 0
    before = snapshot(root / "runs")
    mount("--bind", "-o", "ro", str(root / "runs"), at=root / "runs")
    if os.access(root / "runs", os.W_OK) and _probe_writable(root / "runs"):
        pytest.skip("the read-only bind mount is still writable here")
    proc = cli(root, "resolve", "tiny", "--set", "train.lr=0.01")
    assert_one_clean_error(proc.returncode, proc.stderr, "read-only file system")
    assert snapshot(root / "runs") == before


def _probe_writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_permission_denied(tmp_path: Path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a case as an unprivileged user")
    root = tmp_path / "p"
    write_experiment(root, "tiny", TINY)
    (root / "runs").mkdir()
    (root / "runs").chmod(0o555)
    for folder in (tmp_path, root, root / "experiments"):
        folder.chmod(0o755)
    (root / "experiments" / "tiny.yaml").chmod(0o644)
    env_ok = subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "true"], capture_output=True
    )
    if env_ok.returncode != 0:
        pytest.skip("setpriv cannot switch to nobody here")
    if not os.access(REPO, os.R_OK):
        pytest.skip("the repository is not readable by nobody")
    proc = cli(root, "resolve", "tiny", user="nobody")
    if "ModuleNotFoundError" in proc.stderr or "Permission denied: '/" in proc.stderr.split("error:")[0]:
        pytest.skip(f"nobody cannot run this Python: {proc.stderr[-300:]}")
    assert_one_clean_error(proc.returncode, proc.stderr, "permission denied")
    assert not any((root / "runs").iterdir())


def test_corpus_size():
    total = len(CONFIG_CASES) + len(SET_CASES) + len(NAME_CASES) + len(DAMAGE_CASES) + 4
    assert total >= 60, total
