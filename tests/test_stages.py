"""The stage table (pipeline/stages.py) is the one place stages are stated: Make rules, CLI, stamps, schema."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest
from conftest import REPO, TINY, project_copy, write_experiment

from pipeline.cli import build_parser
from pipeline.config.load import load_experiment
from pipeline.errors import ConfigError
from pipeline.stages import STAGE, STAGES, WORK_STAGES, make_fragment, run_targets, stage_hashes


def test_generated_make_rules_match_the_table():
    committed = (REPO / "pipeline" / "stages.mk").read_text()
    assert committed == make_fragment(), "pipeline/stages.mk is stale: run `make stages.mk`"
    for stage in STAGES:
        assert f"_{stage.name}:" in committed


def test_every_stage_is_a_cli_command_with_the_same_function_signature():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for stage in STAGES:
        assert stage.name in commands
        params = list(inspect.signature(stage.function()).parameters)
        assert params[:2] == ["cfg", "run_dir"], stage.name


def test_schema_stage_names_come_from_the_table(tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project)
    with pytest.raises(ConfigError) as err:
        load_experiment("tiny", ["stages=[prepare,trian]"])
    assert "stages.1" in str(err.value) and all(name in str(err.value) for name in WORK_STAGES)


def test_a_train_edit_changes_train_eval_report_stamps_but_not_prepare(tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project)
    base = stage_hashes(load_experiment("tiny"))
    changed = stage_hashes(load_experiment("tiny", ["train.lr=0.01"]))
    assert [s for s in base if base[s] != changed[s]] == ["train", "eval", "report"]
    report_only = stage_hashes(load_experiment("tiny", ["report.title=x"]))
    assert [s for s in base if base[s] != report_only[s]] == ["report"]


def test_run_targets_follow_the_active_stages_and_the_baseline(tiny_project, monkeypatch):
    monkeypatch.chdir(tiny_project)
    bench = {"variants": [{"name": "a"}], "seq_len": 16}
    write_experiment(tiny_project, "sweep", {**TINY, "stages": ["bench"], "bench": bench,
                                             "model": {**TINY["model"], "vocab_size": 300}})  # fmt: skip
    default = run_targets(load_experiment("tiny"))
    assert "DEPS_report := $(RUN)/prepared/DONE $(RUN)/train/DONE $(RUN)/eval/DONE\n" in default
    assert "COMPARE_INPUTS :=\n" in default
    sweep = run_targets(load_experiment("sweep"))
    assert "DEPS_bench :=\n" in sweep and "DEPS_report := $(RUN)/bench/DONE\n" in sweep  # no prepare: synthetic data
    compared = run_targets(load_experiment("tiny", ["report.compare_to=sweep"]))
    assert "runs/sweep/stamps/*.sha256" in compared and "runs/sweep/*/DONE" in compared
    # a repeat/sweep baseline: its members' stamps, DONE markers and outcomes, one or two folders down
    for watched in ("runs/sweep/members.json", "runs/sweep/*/stamps/*.sha256", "runs/sweep/*/*/member.json",
                    "runs/sweep/*/*/train/DONE"):  # fmt: skip
        assert any(glob_matches(glob, watched) for glob in compare_globs(compared)), watched


def glob_matches(glob: str, path: str) -> bool:
    """Make's $(wildcard): a `*` never crosses a `/` (fnmatch's does)."""
    return re.fullmatch(re.escape(glob).replace(r"\*", "[^/]*"), path) is not None


def compare_globs(targets: str) -> list[str]:
    line = next(ln for ln in targets.splitlines() if ln.startswith("COMPARE_INPUTS :="))
    return line.removeprefix("COMPARE_INPUTS := $(wildcard ").removesuffix(")").split()


def test_make_dry_run_uses_the_generated_rules_before_any_resolve(tmp_path):
    # A fresh `make -n` has no runs/<EXP>/stamps/targets.mk yet: the defaults in stages.mk must give the chain.
    project = project_copy(tmp_path)  # a copy: the checkout itself may already have a runs/smoke/
    out = subprocess.run(["make", "-n", "report", "EXP=smoke", f"PY={sys.executable}"], cwd=project,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for stage in ("prepare", "train", "eval", "report"):
        assert f"-m pipeline {stage} runs/smoke" in out.stdout


def test_report_stage_has_code_dependencies_that_exist():
    for path in STAGE["report"].code:
        assert (REPO / path).exists(), path


def test_make_help_lists_every_public_target_with_one_line(tmp_path):
    makefile = (REPO / "Makefile").read_text()
    phony = {t for line in re.findall(r"^\.PHONY: (.*)$", makefile, re.M) for t in line.split()}
    public = {t for t in phony if not t.startswith(("_", "$", "FORCE", "compare-needs"))} | {s.name for s in STAGES}
    out = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    listed = dict(re.findall(r"^  (\S+)\s+(\S.*)$", out.stdout, re.M))
    assert public <= set(listed), public - set(listed)
    assert all(len(text) > 10 for text in listed.values())
