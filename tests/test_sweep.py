"""Repeats and sweeps without training: expansion into members, their names and overrides, schema errors, the
member wrapper's outcome file, the job-array scripts (PJM cannot run here: its script and command only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, pipeline_env, write_experiment

from pipeline import records, sweep
from pipeline.config.load import load_experiment
from pipeline.errors import ConfigError
from pipeline.member import main as member_main


def members_of(root: Path, name: str, overrides: tuple[str, ...] = ()) -> list[sweep.Member]:
    cfg = load_experiment(name, overrides, root=root / "experiments", runs=root / "runs")
    return sweep.expand(cfg, overrides, load=lambda n, o: load_experiment(n, o, root=root / "experiments"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_experiment(tmp_path, "tiny", TINY)
    return tmp_path


def test_seeds_only(root: Path):
    members = members_of(root, "tiny", ("repeat.seeds=[0,1,7]",))
    assert [m.name for m in members] == ["seed-0", "seed-1", "seed-7"]
    assert [m.config.train.seed for m in members] == [0, 1, 7]
    assert all(m.config.repeat is None and m.config.sweep is None for m in members)
    assert members[2].overrides == ["train.seed=7"] and members[2].point == {} and members[2].point_name is None
    assert members[0].config.train.lr == TINY["train"]["lr"]  # everything else as the experiment says
    assert members[1].config.report.title == "tiny · seed-1"  # its own report names the member


def test_grid_zip_and_seeds(root: Path):
    write_experiment(
        root,
        "grid",
        {
            "extends": "tiny",
            "sweep": {"grid": {"train.lr": ["1e-3", 3e-3], "train.batch_size": [2, 4]}, "zip": {}},
            "repeat": {"seeds": [0, 1]},
        },
    )
    members = members_of(root, "grid")
    names = [m.name for m in members]
    assert names[:4] == ["lr-1e-3_bs-2/seed-0", "lr-1e-3_bs-2/seed-1", "lr-1e-3_bs-4/seed-0", "lr-1e-3_bs-4/seed-1"]
    assert len(names) == 8 and len(set(names)) == 8
    first = members[0]
    # "1e-3" is a string to YAML 1.1; the point and the overrides carry the typed value the schema made of it
    assert first.point == {"train.lr": 0.001, "train.batch_size": 2} and first.config.train.lr == 0.001
    assert first.overrides == ["train.lr=0.001", "train.batch_size=2", "train.seed=0"]
    record = sweep.members_record(load_experiment("grid", root=root / "experiments"), members)
    parsed = records.Members.model_validate(record)
    assert parsed.swept_keys == ["train.lr", "train.batch_size"] and parsed.seeds == [0, 1]
    assert parsed.members[3].run_dir == "lr-1e-3_bs-4/seed-1" and parsed.members[3].point_name == "lr-1e-3_bs-4"


def test_zip_takes_lists_side_by_side(root: Path):
    write_experiment(
        root, "z", {"extends": "tiny", "sweep": {"zip": {"train.lr": [1e-3, 2e-3], "train.steps": [4, 8]}}}
    )
    members = members_of(root, "z")
    assert [m.name for m in members] == ["lr-1e-3_steps-4", "lr-2e-3_steps-8"]
    assert [m.config.train.steps for m in members] == [4, 8]
    assert [m.config.train.seed for m in members] == [0, 0]  # no repeat: the configured seed, no seed-<n> folder


def test_set_items_reach_members_but_not_repeat(root: Path):
    members = members_of(root, "tiny", ("train.steps=5", "repeat.seeds=[3]"))
    assert members[0].config.train.steps == 5
    assert sweep.base_overrides(["train.steps=5", "repeat.seeds=[3]", "sweep.grid={}"]) == ["train.steps=5"]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"grid": {"train.lrr": [1]}}, "sweep.grid.train.lrr: unknown key (lrr does not exist in the schema)"),
        ({"grid": {"bench.steps": [1]}}, "sweep.grid.bench.steps: unknown key (bench is not set, so steps"),
        ({"grid": {"train.lr": []}}, "sweep.grid.train.lr: give at least one value"),
        ({"grid": {"train.lr": [1e-3, 1e-3]}}, "sweep.grid.train.lr: name each value once"),
        ({"zip": {"train.lr": [1e-3, 2e-3], "train.steps": [4]}}, "zip lists must have the same length"),
        ({"grid": {"train.seed": [1, 2]}}, "sweep.grid.train.seed: cannot be swept (use repeat.seeds)"),
        ({"grid": {"train": [1]}}, "sweep.grid.train: is a section"),
        ({"grid": {"train.lr": [1e-3]}, "zip": {"train.lr": [1e-3]}}, "sweep.zip.train.lr: given in sweep.grid too"),
        ({"grid": {"train.lr": ["fast"]}}, "train.lr: expected a number, got 'fast'"),
        ({}, "sweep.grid: give at least one key to sweep"),
    ],
)
def test_bad_sweeps_are_one_line_naming_the_key(root: Path, section: dict, message: str):
    path = write_experiment(root, "bad", {"extends": "tiny", "sweep": section})
    with pytest.raises(ConfigError) as err:
        members_of(root, "bad")
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.startswith((str(path), "sweep: the member with"))


def test_repeat_seeds_validated(root: Path):
    for value, message in (("[]", "repeat.seeds"), ("[1,1]", "name each seed once")):
        with pytest.raises(ConfigError, match=message):
            load_experiment("tiny", [f"repeat.seeds={value}"], root=root / "experiments")


def test_member_not_found(root: Path):
    members = members_of(root, "tiny", ("repeat.seeds=[0,1]",))
    with pytest.raises(ConfigError, match=r"MEMBER: 'seed-5' is not a member of tiny; members: seed-0, seed-1"):
        sweep.find(members, "seed-5", "tiny")


@pytest.mark.slow  # five CLI processes
def test_cli_resolve_members_then_one_member(root: Path):
    """The parent resolve writes members.json + MEMBERS (no config.yaml); a member resolves into its folder, and
    adding a seed leaves the existing members' stamps untouched (Make reruns only the new one)."""
    env = pipeline_env()

    def resolve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "resolve", "tiny", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    proc = resolve("--set", "repeat.seeds=[0,1]")
    assert proc.returncode == 0, proc.stderr
    top = root / "runs" / "tiny"
    assert not (top / "config.yaml").exists()
    assert "MEMBERS := seed-0 seed-1" in (top / "stamps" / "targets.mk").read_text()
    assert [m.name for m in records.MEMBERS.read(top).members] == ["seed-0", "seed-1"]

    assert resolve("--set", "repeat.seeds=[0,1]", "--member", "seed-1").returncode == 0
    stamp = top / "seed-1" / "stamps" / "train.sha256"
    before = stamp.stat().st_mtime_ns
    how = json.loads((top / "seed-1" / "resolve.json").read_text())
    assert how["member"] == "seed-1" and how["overrides"] == ["train.seed=1"]  # repeat.seeds is not the member's
    assert "repeat" not in (top / "seed-1" / "config.yaml").read_text()

    assert resolve("--set", "repeat.seeds=[0,1,2]", "--member", "seed-1").returncode == 0
    assert stamp.stat().st_mtime_ns == before

    bad = resolve("--set", "repeat.seeds=[0,1]", "--member", "seed-9")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: MEMBER: 'seed-9' is not a member of tiny; members: seed-0, seed-1"
    ]


def test_member_wrapper_records_failure_and_success(tmp_path: Path, capsys, monkeypatch):
    run = tmp_path / "runs" / "x"
    script = "echo working; echo 'error: data.source: not found' >&2; echo 'make: *** Error 2' >&2; exit 2"
    assert member_main([str(run), "a/seed-0", "--goal", "report", "--", "sh", "-c", script]) == 2
    status = records.MEMBER_STATUS.read(run / "a" / "seed-0")
    assert status.status == "failed" and status.exit_code == 2 and status.goal == "report"
    assert status.error == "error: data.source: not found"
    assert "[a/seed-0] working" in capsys.readouterr().out
    assert "working" in (run / "a" / "seed-0" / "member.log").read_text()

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert member_main([str(run), "b", "--jobs", "64", "--", "sh", "-c", "echo threads=$OMP_NUM_THREADS"]) == 0
    assert "[b] threads=1" in capsys.readouterr().out  # cores // 64 on any machine here, at least 1
    assert records.MEMBER_STATUS.read(run / "b").status == "completed"
    assert records.MEMBER_STATUS.read(run / "b").error is None

    (run / "members.json").write_text(
        json.dumps({"members": [{"name": n, "run_dir": n} for n in ("a/seed-0", "b", "c")]})
    )
    assert member_main(["--summary", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 of 3 members failed: a/seed-0 (exit 2: error: data.source: not found)")
    assert "c (did not record how it ended)" in err


def test_status_file_is_stable(tmp_path: Path):
    """No times in member.json: a rerun that ends the same way keeps the file, so the aggregate is not redone."""
    run = tmp_path / "x"
    assert member_main([str(run), "m", "--", "true"]) == 0
    path = run / "m" / "member.json"
    before = path.stat().st_mtime_ns
    assert member_main([str(run), "m", "--", "true"]) == 0
    assert path.stat().st_mtime_ns == before


def test_job_array_scripts(root: Path, monkeypatch):
    """Slurm: one array task per member + an afterany job for the aggregate; PJM: a bulk job (`pjsub --bulk
    --sparam`). Dry runs: PJM cannot exist here, the real Slurm array is tests/test_sweep_make.py."""
    from pipeline.hpc.submit import submit_members

    monkeypatch.chdir(root)
    write_experiment(root, "sw", {"extends": "tiny", "sweep": {"grid": {"train.lr": [1e-3, 2e-3, 4e-3]}}})
    members = members_of(root, "sw")
    cfg = load_experiment("sw", root=root / "experiments")
    array, aggregate = submit_members(cfg, members, "slurm", ["train.steps=4"], "PY=python3", dry_run=True)
    script = (root / array["script"]).read_text()
    assert "#SBATCH --array=0-2" in script and "slurm-%A_%a.out" in script
    assert "MEMBERS=(lr-1e-3 lr-2e-3 lr-4e-3)" in script
    assert 'make "member/report/${MEMBERS[$SLURM_ARRAY_TASK_ID]}" EXP=sw PY=python3 SET=train.steps=4' in script
    final = (root / aggregate["script"]).read_text()
    assert "#SBATCH --dependency=afterany:<array job id>" in final and "make aggregate EXP=sw" in final

    (bulk,) = submit_members(cfg, members, "pjm", [], "", dry_run=True)
    assert bulk["command"] == f"pjsub --bulk --sparam 0-2 {bulk['script']}"
    text = (root / bulk["script"]).read_text()
    assert '"member/report/${MEMBERS[$PJM_BULKNUM]}"' in text and "#PJM -N labnote-sw" in text
    assert bulk["then"] == "make aggregate EXP=sw"


@pytest.mark.slow  # make in a copy of the repository
def test_make_check_takes_seeds(root: Path):
    from conftest import project_copy

    project = project_copy(root / "copy")
    write_experiment(project, "tiny", TINY)
    env = pipeline_env()
    env.pop("PYTHONPATH")
    run = subprocess.run(
        ["make", "check", "EXP=tiny", "SEEDS=0 1 2", f"PY={sys.executable}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "tiny: ok (3 members)" in run.stdout
    bad = subprocess.run(
        ["make", "check", "EXP=tiny", "JOBS=two", f"PY={sys.executable}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "error: JOBS: expected how many members run at once" in bad.stderr
    assert not (project / "runs").exists()
