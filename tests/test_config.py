"""Config loading: `extends:` inheritance, SET overrides, one-line errors naming file and key, freezing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pipeline.config.load import load_experiment, parse_overrides
from pipeline.config.resolve import freeze, load_resolved
from pipeline.errors import ConfigError
from pipeline.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]

# The smallest valid experiment: everything else comes from the schema defaults.
BASE = {"data": {"source": {"type": "builtin", "name": "kjv"}}, "train": {"steps": 10}}


def _base(**sections) -> dict:
    """BASE with whole sections replaced (a deep copy, so cases never share dicts)."""
    body = yaml.safe_load(yaml.safe_dump(BASE))
    body.update(yaml.safe_load(yaml.safe_dump(sections)) if sections else {})
    return body


def write(exp_dir: Path, name: str, body: dict | str) -> Path:
    exp_dir.mkdir(parents=True, exist_ok=True)
    path = exp_dir / f"{name}.yaml"
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "experiments"
    d.mkdir()
    return d


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus" / "train.txt"
    path.parent.mkdir()
    path.write_text("In the beginning.\n\nAnd the earth was without form.\n", encoding="utf-8")
    return path


def config_error(exp_dir: Path, name: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_experiment(name, overrides, root=exp_dir)
    return str(info.value)


# =========================================================================== valid files and `extends:`
def test_minimal_file_loads_with_schema_defaults(exp_dir):
    write(exp_dir, "base", BASE)
    exp = load_experiment("base", root=exp_dir)
    assert exp.name == "base"
    assert exp.extends is None
    assert exp.train.steps == 10 and exp.train.epochs is None
    assert exp.data.source.type == "builtin" and exp.data.source.name == "kjv"
    assert exp.model.dim == 128 and exp.model.max_seq_len == 256  # schema defaults
    assert exp.seq_len == exp.model.max_seq_len  # data.seq_len defaults to the model's positions


def test_extends_child_overrides_one_nested_key_and_inherits_the_rest(exp_dir):
    write(exp_dir, "parent", _base(train={"steps": 40, "lr": 0.01, "batch_size": 4}, model={"dim": 64, "heads": 2}))
    write(exp_dir, "child", {"extends": "parent", "train": {"lr": 0.002}})
    exp = load_experiment("child", root=exp_dir)
    assert exp.name == "child" and exp.extends == "parent"
    assert exp.train.lr == pytest.approx(0.002)  # overridden
    assert exp.train.steps == 40 and exp.train.batch_size == 4  # inherited siblings of the overridden key
    assert exp.model.dim == 64 and exp.model.heads == 2  # inherited section


def test_extends_two_levels(exp_dir):
    write(
        exp_dir,
        "grand",
        _base(
            train={"steps": 40, "lr": 0.01, "seed": 3}, model={"dim": 64, "heads": 2}, report={"title": "grand title"}
        ),
    )
    write(exp_dir, "parent", {"extends": "grand", "train": {"lr": 0.005}, "model": {"layers": 3}})
    write(exp_dir, "child", {"extends": "parent", "train": {"seed": 7}, "description": "leaf"})
    exp = load_experiment("child", root=exp_dir)
    assert exp.name == "child" and exp.extends == "parent"
    assert exp.train.seed == 7  # from child
    assert exp.train.lr == pytest.approx(0.005)  # from parent
    assert exp.model.layers == 3  # from parent
    assert exp.train.steps == 40 and exp.model.dim == 64 and exp.report.title == "grand title"  # from grand
    assert exp.description == "leaf"


def test_extends_changing_a_tagged_section_type_replaces_it(exp_dir, corpus):
    # parent: builtin source with `name`; child switches to files. Merged key by key, the builtin `name`
    # would leak into the files source and fail as an unknown key.
    write(exp_dir, "parent", BASE)
    write(exp_dir, "child", {"extends": "parent", "data": {"source": {"type": "files", "train": [str(corpus)]}}})
    exp = load_experiment("child", root=exp_dir)
    assert exp.data.source.type == "files"
    assert exp.data.source.train == [corpus]


def test_extends_cycle_is_an_error_naming_the_file(exp_dir):
    write(exp_dir, "a", {"extends": "b", **BASE})
    b = write(exp_dir, "b", {"extends": "a"})
    msg = config_error(exp_dir, "a")
    assert "\n" not in msg
    assert msg.startswith(f"{b}:")
    assert "cycle" in msg and "a -> b -> a" in msg


def test_extends_itself_is_a_cycle(exp_dir):
    path = write(exp_dir, "selfish", {"extends": "selfish", **BASE})
    msg = config_error(exp_dir, "selfish")
    assert msg.startswith(f"{path}:") and "cycle" in msg and "\n" not in msg


def test_extends_missing_parent_names_it(exp_dir):
    write(exp_dir, "orphan", {"extends": "no_such_parent", **BASE})
    msg = config_error(exp_dir, "orphan")
    assert "\n" not in msg
    assert str(exp_dir / "no_such_parent.yaml") in msg
    assert "not found" in msg


def test_unknown_experiment_suggests_a_close_name(exp_dir):
    write(exp_dir, "smoke", BASE)
    write(exp_dir, "baseline", BASE)
    msg = config_error(exp_dir, "smok")
    assert "\n" not in msg
    assert msg.startswith(str(exp_dir / "smok.yaml"))
    assert "did you mean 'smoke'" in msg


def test_unknown_experiment_without_close_name_lists_known(exp_dir):
    write(exp_dir, "smoke", BASE)
    msg = config_error(exp_dir, "zzzzzzzz")
    assert "known: smoke" in msg and "\n" not in msg


# =========================================================================== SET overrides
def test_set_one_space_separated_string(exp_dir):
    write(exp_dir, "base", BASE)
    exp = load_experiment("base", ["train.steps=50 model.dim=64"], root=exp_dir)
    assert exp.train.steps == 50 and exp.model.dim == 64


def test_set_list_of_items_overrides_the_file(exp_dir):
    write(exp_dir, "base", _base(train={"steps": 10, "lr": 0.01}))
    exp = load_experiment("base", ["train.steps=50", "model.dim=64", "train.seed=7"], root=exp_dir)
    assert exp.train.steps == 50 and exp.model.dim == 64 and exp.train.seed == 7
    assert exp.train.lr == pytest.approx(0.01)  # untouched key from the file survives the override


def test_set_values_are_typed(exp_dir):
    write(exp_dir, "base", BASE)
    exp = load_experiment(
        "base",
        ["train.lr=3e-4 train.compile=true train.seed=11 train.clip=0.5", "report.title='two words'"],
        root=exp_dir,
    )
    assert isinstance(exp.train.lr, float) and exp.train.lr == pytest.approx(3e-4)
    assert exp.train.compile is True
    assert exp.train.seed == 11 and isinstance(exp.train.seed, int)
    assert exp.train.clip == pytest.approx(0.5)
    assert exp.report.title == "two words"


def test_parse_overrides_builds_a_typed_tree():
    tree = parse_overrides(["train.steps=50 train.compile=false", "model.dropout=0.25", "report.title=x"])
    assert tree == {"train": {"steps": 50, "compile": False}, "model": {"dropout": 0.25}, "report": {"title": "x"}}
    assert isinstance(tree["train"]["steps"], int) and isinstance(tree["model"]["dropout"], float)


@pytest.mark.parametrize("item", ["train.steps", "=50", "train..steps=5", ".steps=5"])
def test_malformed_override_is_a_set_error(exp_dir, item):
    write(exp_dir, "base", BASE)
    msg = config_error(exp_dir, "base", [item])
    assert msg.startswith("SET")
    assert "\n" not in msg
    assert repr(item) in msg


def test_override_setting_a_value_and_a_mapping_at_once(exp_dir):
    write(exp_dir, "base", BASE)
    msg = config_error(exp_dir, "base", ["train.steps=5 train.steps.x=3"])
    assert msg.startswith("SET") and "train.steps.x" in msg and "\n" not in msg


# =========================================================================== malformed configs
@dataclass
class Case:
    files: dict  # experiment name -> body (dict, or raw text); "@TRAIN@" is replaced by a real file
    origin: str  # stem of the file the message must name, or "SET"
    contains: list  # substrings the message must contain (the dotted key first)
    load: str = "bad"  # experiment to load
    overrides: list = field(default_factory=list)


CASES = [
    pytest.param(
        Case({"bad": _base(trainer={"steps": 3})}, "bad", ["trainer", "unknown key", "did you mean 'train'"]),
        id="unknown-top-level-key",
    ),
    pytest.param(
        Case({"bad": _base(train={"steps": 10, "lrr": 0.1})}, "bad", ["train.lrr", "unknown key", "did you mean 'lr'"]),
        id="unknown-nested-key-suggests",
    ),
    pytest.param(
        Case(
            {"bad": _base(data={"source": {"type": "files", "train": ["@TRAIN@"], "validaton": []}})},
            "bad",
            ["data.source.validaton", "did you mean 'validation'"],
        ),
        id="files-source-typo",
    ),
    pytest.param(
        Case(
            {"bad": _base(data={"source": {"type": "files", "trian": ["@TRAIN@"]}})},
            "bad",
            ["data.source.trian", "unknown key", "did you mean 'train'"],
        ),
        id="files-source-typo-of-required-key",
    ),
    pytest.param(
        Case(
            {
                "bad": _base(
                    data={
                        "source": {"type": "builtin", "name": "kjv"},
                        "tokenizer": {"type": "bpe", "vocab_size": 500, "min_freq": 2},
                    }
                )
            },
            "bad",
            ["data.tokenizer.min_freq", "did you mean 'min_frequency'"],
        ),
        id="tokenizer-typo",
    ),
    pytest.param(
        Case({"bad": _base(train={"steps": 10, "lr": "fast"})}, "bad", ["train.lr", "expected a number", "'fast'"]),
        id="wrong-type-number",
    ),
    pytest.param(
        Case({"bad": _base(train={"steps": "ten"})}, "bad", ["train.steps", "expected an integer", "'ten'"]),
        id="wrong-type-integer",
    ),
    pytest.param(
        Case(
            {"bad": _base(train={"steps": 10, "compile": "maybe"})},
            "bad",
            ["train.compile", "expected true or false", "'maybe'"],
        ),
        id="wrong-type-bool",
    ),
    pytest.param(Case({"bad": _base(model=[64, 2])}, "bad", ["model", "expected a mapping"]), id="section-not-mapping"),
    pytest.param(
        Case({"bad": _base(train={"steps": 10, "precision": "fp8"})}, "bad", ["train.precision", "'fp8'", "'bf16'"]),
        id="wrong-enum",
    ),
    pytest.param(
        Case(
            {"bad": _base(data={"source": {"type": "builtin", "name": "wiki"}})},
            "bad",
            ["data.source.name", "'wiki'", "'kjv'"],
        ),
        id="wrong-enum-builtin-name",
    ),
    pytest.param(
        Case({"bad": _base(train={"steps": -5})}, "bad", ["train.steps", "greater than 0", "-5"]), id="negative-steps"
    ),
    pytest.param(Case({"bad": _base(train={"steps": 0})}, "bad", ["train.steps", "greater than 0"]), id="zero-steps"),
    pytest.param(
        Case({"bad": _base(train={"steps": 10, "epochs": 2})}, "bad", ["train.steps", "train.epochs", "exactly one"]),
        id="steps-and-epochs",
    ),
    pytest.param(
        Case({"bad": _base(train={"lr": 0.01})}, "bad", ["train.steps", "train.epochs", "exactly one"]),
        id="neither-steps-nor-epochs",
    ),
    pytest.param(
        Case({"bad": _base(train={"steps": 10, "warmup_steps": 10})}, "bad", ["train.warmup_steps", "train.steps=10"]),
        id="warmup-not-below-steps",
    ),
    pytest.param(
        Case(
            {
                "bad": _base(
                    data={"source": {"type": "builtin", "name": "kjv"}, "seq_len": 512}, model={"max_seq_len": 128}
                )
            },
            "bad",
            ["data.seq_len", "model.max_seq_len=128", "512"],
        ),
        id="seq-len-above-positions",
    ),
    pytest.param(
        Case(
            {"bad": _base(model={"max_seq_len": 128}, eval={"perplexity": {"seq_len": 256}})},
            "bad",
            ["eval.perplexity.seq_len", "model.max_seq_len=128", "256"],
        ),
        id="ppl-seq-len-above-positions",
    ),
    pytest.param(
        Case({"bad": _base(model={"dim": 100, "heads": 3})}, "bad", ["model.heads", "model.dim=100", "3"]),
        id="heads-do-not-divide-dim",
    ),
    pytest.param(
        Case({"bad": _base(model={"heads": 4, "kv_heads": 3})}, "bad", ["model.kv_heads", "model.heads=4"]),
        id="kv-heads-do-not-divide-heads",
    ),
    pytest.param(
        Case(
            {
                "bad": _base(
                    model={"vocab_size": 300},
                    data={
                        "source": {"type": "builtin", "name": "kjv"},
                        "tokenizer": {"type": "bpe", "vocab_size": 500},
                    },
                )
            },
            "bad",
            ["model.vocab_size", "data.tokenizer.vocab_size=500"],
        ),
        id="vocab-below-tokenizer",
    ),
    pytest.param(
        Case({"bad": {"train": {"steps": 10}}}, "bad", ["data", "required key is missing"]), id="missing-data-section"
    ),
    pytest.param(Case({"bad": ""}, "bad", ["data", "required key is missing"]), id="empty-file"),
    pytest.param(
        Case({"bad": _base(data={"source": {"name": "kjv"}})}, "bad", ["data.source", "type", "builtin"]),
        id="missing-source-type",
    ),
    pytest.param(
        Case(
            {"bad": _base(data={"source": {"type": "ftp", "name": "kjv"}})},
            "bad",
            ["data.source", "'ftp'", "builtin", "files"],
        ),
        id="unknown-source-type",
    ),
    pytest.param(
        Case(
            {"bad": _base(data={"source": {"type": "files", "train": ["@MISSING@"]}})},
            "bad",
            ["data.source.train", "file not found", "@MISSING@"],
        ),
        id="files-source-train-missing",
    ),
    pytest.param(
        Case({"bad": "train:\n  steps: 10\n  lr: [1, 2\ndata: {}\n"}, "bad", ["line 4", "invalid YAML"]),
        id="invalid-yaml",
    ),
    pytest.param(Case({"bad": "- train\n- data\n"}, "bad", ["mapping", "list"]), id="top-level-list"),
    pytest.param(Case({"bad": _base(extends=5)}, "bad", ["extends", "experiment name"]), id="extends-not-a-name"),
    # -- errors set by SET name SET
    pytest.param(
        Case({"bad": BASE}, "SET", ["train.lr", "expected a number", "'fast'"], overrides=["train.lr=fast"]),
        id="set-wrong-type",
    ),
    pytest.param(
        Case({"bad": BASE}, "SET", ["train.lrr", "did you mean 'lr'"], overrides=["train.lrr=0.1"]),
        id="set-unknown-key",
    ),
    pytest.param(
        Case({"bad": BASE}, "SET", ["model.heads", "model.dim=128"], overrides=["model.heads=3"]), id="set-heads"
    ),
    # -- origin tracking: keys that came from a parent name the parent file
    pytest.param(
        Case(
            {"parent": _base(train={"steps": 10, "lr": "fast"}), "bad": {"extends": "parent"}},
            "parent",
            ["train.lr", "expected a number"],
        ),
        id="parent-wrong-type",
    ),
    pytest.param(
        Case(
            {"parent": _base(model={"dimm": 64}), "bad": {"extends": "parent", "train": {"lr": 0.1}}},
            "parent",
            ["model.dimm", "did you mean 'dim'"],
        ),
        id="parent-unknown-key",
    ),
    pytest.param(
        Case(
            {
                "parent": _base(data={"source": {"type": "files", "train": ["@MISSING@"]}}),
                "bad": {"extends": "parent", "train": {"lr": 0.1}},
            },
            "parent",
            ["data.source.train", "@MISSING@"],
        ),
        id="parent-missing-train-file",
    ),
    pytest.param(
        Case(
            {
                "parent": _base(data={"source": {"type": "builtin", "name": "kjv"}, "seq_len": 512}),
                "bad": {"extends": "parent", "model": {"layers": 1}},
            },
            "parent",
            ["data.seq_len", "model.max_seq_len"],
        ),
        id="parent-seq-len-cross-check",
    ),
    pytest.param(
        Case(
            {"parent": _base(model={"dim": 64}), "bad": {"extends": "parent", "model": {"heads": 3}}},
            "bad",
            ["model.heads", "model.dim=64"],
        ),
        id="child-heads-cross-check",
    ),
    pytest.param(
        Case({"bad": BASE}, "SET", ["data.seq_len", "model.max_seq_len"], overrides=["data.seq_len=1024"]),
        id="set-seq-len-cross-check",
    ),
]


def _substitute(node, mapping: dict[str, str]):
    if isinstance(node, dict):
        return {k: _substitute(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, mapping) for v in node]
    return mapping.get(node, node) if isinstance(node, str) else node


@pytest.mark.parametrize("case", CASES)
def test_malformed_config_is_one_line_naming_file_and_key(exp_dir, corpus, tmp_path, case: Case):
    missing = tmp_path / "corpus" / "does_not_exist.txt"
    mapping = {"@TRAIN@": str(corpus), "@MISSING@": str(missing)}
    for name, body in case.files.items():
        write(exp_dir, name, _substitute(body, mapping))
    with pytest.raises(ConfigError) as info:
        load_experiment(case.load, case.overrides, root=exp_dir)
    msg = str(info.value)
    assert "\n" not in msg, msg
    where = "SET" if case.origin == "SET" else str(exp_dir / f"{case.origin}.yaml")
    assert msg.startswith(f"{where}:"), msg
    for part in _substitute(case.contains, mapping):
        assert part in msg, f"{part!r} not in {msg!r}"


def test_there_are_at_least_twelve_malformed_cases():
    assert len(CASES) >= 12


# =========================================================================== freeze + stamps
def _stamp_times(run: RunDir) -> dict[str, int]:
    return {stage: run.stamp(stage).stat().st_mtime_ns for stage in ("prepare", "train", "eval", "report")}


OLD = 1_000_000_000_000_000_000  # 2001-09-09, in ns: no write during the test can produce it


def _age_outputs(run: RunDir, ns: int = OLD) -> None:
    """Set every written file's mtime to a fixed past time: a file that is rewritten gets a new one."""
    for path in [
        run.config,
        run.root / "resolve.json",
        *(run.stamp(s) for s in ("prepare", "train", "eval", "report")),
    ]:
        os.utime(path, ns=(ns, ns))


@pytest.fixture
def frozen(exp_dir, tmp_path):
    write(exp_dir, "base", _base(train={"steps": 20, "lr": 0.01}, report={"title": "first"}))
    run = RunDir(tmp_path / "runs" / "base")
    cfg = load_experiment("base", root=exp_dir)
    changed = freeze(cfg, run)
    assert changed == {"prepare": True, "train": True, "eval": True, "bench": True, "report": True}
    _age_outputs(run, OLD)
    return exp_dir, run, cfg


def test_freeze_writes_config_resolve_and_stamps(frozen):
    _, run, cfg = frozen
    assert load_resolved(run.root) == cfg
    for stage in ("prepare", "train", "eval", "report"):
        text = run.stamp(stage).read_text()
        assert re.fullmatch(r"[0-9a-f]{64}\n", text), text
    assert len({run.stamp(s).read_text() for s in ("prepare", "train", "eval", "report")}) == 4
    assert yaml.safe_load((run.root / "resolve.json").read_text())["experiment"] == "base"


def test_freeze_twice_keeps_every_file_untouched(frozen):
    _, run, cfg = frozen
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in run.root.rglob("*") if p.is_file()}
    changed = freeze(cfg, run)
    assert changed == {"prepare": False, "train": False, "eval": False, "bench": False, "report": False}
    after = {p: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes()) for p in run.root.rglob("*") if p.is_file()}
    assert after == before
    assert set(_stamp_times(run).values()) == {OLD}


def test_changing_report_title_changes_only_the_report_stamp(frozen):
    exp_dir, run, _ = frozen
    cfg = load_experiment("base", ["report.title=second"], root=exp_dir)
    changed = freeze(cfg, run, ["report.title=second"])
    assert changed == {"prepare": False, "train": False, "eval": False, "bench": False, "report": True}
    times = _stamp_times(run)
    assert times["prepare"] == times["train"] == times["eval"] == OLD
    assert times["report"] != OLD
    assert run.config.stat().st_mtime_ns != OLD and "second" in run.config.read_text()


def test_changing_train_lr_changes_train_eval_report_but_not_prepare(frozen):
    exp_dir, run, _ = frozen
    cfg = load_experiment("base", ["train.lr=0.02"], root=exp_dir)
    changed = freeze(cfg, run)
    assert changed == {"prepare": False, "train": True, "eval": True, "bench": False, "report": True}
    times = _stamp_times(run)
    assert times["prepare"] == OLD
    assert times["train"] != OLD and times["eval"] != OLD and times["report"] != OLD


def test_changing_seq_len_does_not_invalidate_prepare(frozen):
    exp_dir, run, _ = frozen
    changed = freeze(load_experiment("base", ["data.seq_len=64"], root=exp_dir), run)
    assert changed == {"prepare": False, "train": True, "eval": True, "bench": False, "report": True}
    assert _stamp_times(run)["prepare"] == OLD


# =========================================================================== CLI
def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_cli_resolve_error_is_one_line_exit_2_and_writes_nothing(tmp_path):
    exp_dir = tmp_path / "experiments"
    write(exp_dir, "cli", BASE)
    ok = _cli(tmp_path, "resolve", "cli", "--run-dir", "runs/x")
    assert ok.returncode == 0, ok.stderr
    run_root = tmp_path / "runs" / "x"
    snapshot = {p: p.read_bytes() for p in run_root.rglob("*") if p.is_file()}
    assert run_root / "config.yaml" in snapshot and len(snapshot) >= 6

    write(exp_dir, "cli", _base(train={"steps": 10, "lr": "fast"}))  # the file becomes invalid
    bad = _cli(tmp_path, "resolve", "cli", "--run-dir", "runs/x")
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert len(lines) == 1, bad.stderr
    assert lines[0].startswith("error:")
    assert "experiments/cli.yaml" in lines[0] and "train.lr" in lines[0]
    assert bad.stdout == ""
    assert {p: p.read_bytes() for p in run_root.rglob("*") if p.is_file()} == snapshot


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_cli_resolve_bad_set_names_set_and_writes_nothing(tmp_path):
    write(tmp_path / "experiments", "cli", BASE)
    ok = _cli(tmp_path, "resolve", "cli", "--run-dir", "runs/x")
    assert ok.returncode == 0, ok.stderr
    run_root = tmp_path / "runs" / "x"
    snapshot = {p: p.read_bytes() for p in run_root.rglob("*") if p.is_file()}
    bad = _cli(tmp_path, "resolve", "cli", "--run-dir", "runs/x", "--set", "train.steps=10 train.precision=fp8")
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: SET: train.precision"), bad.stderr
    assert {p: p.read_bytes() for p in run_root.rglob("*") if p.is_file()} == snapshot
