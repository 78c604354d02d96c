"""The README describes the repository as it is.

- Its "## Layout" block names only paths that exist, and names every top-level file/directory git tracks
  (dotfiles aside), every directory and module directly under pipeline/, and every experiment file.
- Every command in its ```bash blocks either runs here, in a copy of the repository (`project_copy`), and
  writes what the README says it writes — or is listed in NOT_RUN / DRY_RUN with the reason. A new command
  that is neither fails `test_every_readme_command_is_accounted_for`.

How the runs are made small (the README's commands train for minutes): each `make` command gets
`PY=<this interpreter>` (the test environment instead of building `.venv`, as tests/test_make.py does) and
TINY_SET appended to its `SET=` value (or added as `SET=` when it has none): the model and data shapes of
tests/conftest.py's TINY, 6 steps, a few evaluation batches; for smoke the first 8 (rolling: 4) items of each
local harness task, for the WikiText-2 recipe (whose point is the data files) no harness tasks — the smoke run
covers that path. Everything else — the experiment file, the rest of its SET overrides, the target — is the
README's.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, pipeline_env, project_copy

README = REPO / "README.md"

# ------------------------------------------------------------------------------------------------ layout
# Paths the layout names that a fresh clone does not have: made by the first run, and git-ignored.
GENERATED = {"runs/"}
NAMED_FILE = re.compile(r"[\w./-]+\.(?:py|j2|md|yaml|jsonl|def|txt|lock|sh)\b")


def layout_entries() -> list[tuple[str, str]]:
    """(path, description) per line of the Layout block; indented lines are inside the last top-level directory."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Layout\n\n```\n(.*?)^```", text, flags=re.M | re.S)
    assert match, "README.md has no '## Layout' code block"
    entries, parent = [], ""
    for line in match.group(1).splitlines():
        if not line.strip():
            continue
        name, _, desc = line.strip().partition(" ")
        if line.startswith("  "):
            assert parent, f"indented layout line without a directory above it: {line!r}"
            name = parent + name
        elif name.endswith("/"):
            parent = name
        entries.append((name, desc.strip()))
    return entries


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def covered(path: str, entries: list[tuple[str, str]]) -> bool:
    return any(p == path or p.startswith(path.rstrip("/") + "/") for p, _ in entries)


def test_layout_paths_exist():
    entries = layout_entries()
    assert len(entries) > 10
    for path, desc in entries:
        target = REPO / path
        if path in GENERATED:
            ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
            assert ignored.returncode == 0, f"{path}: listed as generated but not git-ignored"
            continue
        if path.endswith("/"):
            assert target.is_dir(), f"Layout names {path}, which is not a directory"
        else:
            assert target.is_file(), f"Layout names {path}, which is not a file"
        # Files named in the description: inside the directory the line is about (or beside the file).
        base = target if path.endswith("/") else target.parent
        for named in NAMED_FILE.findall(desc):
            candidates = [base / named, REPO / named]
            assert any(c.is_file() for c in candidates), f"Layout line {path}: {named} does not exist"


def test_layout_names_the_whole_tree():
    entries = layout_entries()
    files = tracked_files()
    top = {f.split("/")[0] + ("/" if "/" in f else "") for f in files}
    top = {t for t in top if not t.startswith(".")}
    missing = sorted(t for t in top if not covered(t, entries))
    assert not missing, f"README Layout does not mention these tracked top-level paths: {missing}"

    in_pipeline = {f.split("/")[1] + ("/" if f.count("/") > 1 else "") for f in files if f.startswith("pipeline/")}
    in_pipeline -= {"__init__.py", "__main__.py"}  # the package itself: the pipeline/ line
    missing = sorted(p for p in in_pipeline if not covered(f"pipeline/{p}", entries))
    assert not missing, f"README Layout does not mention these parts of pipeline/: {missing}"


def test_layout_lists_every_experiment():
    desc = dict(layout_entries())["experiments/"]
    named = set(re.search(r"\(([^)]*)\)", desc).group(1).replace(" ", "").split(","))
    assert named == {p.stem for p in (REPO / "experiments").glob("*.yaml")}


# ------------------------------------------------------------------------------------------------ commands
def readme_commands() -> list[str]:
    """The shell commands of the README's ```bash blocks: comment lines dropped, `\\` continuations joined,
    trailing comments removed, whitespace normalised."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", text, flags=re.M | re.S):
        lines = [line for line in block.splitlines() if not line.strip().startswith("#")]
        for command in re.sub(r"\\\n", "", "\n".join(lines)).splitlines():  # as bash joins `\` + newline
            if shlex.split(command, comments=True):
                commands.append(norm(command))
    return commands


def norm(command: str) -> str:
    """Words as the shell splits them, runs of spaces inside a word (a continued SET="…") made one."""
    return shlex.join(" ".join(word.split()) for word in shlex.split(command, comments=True))


# Commands that are not run by this test, and why. Keep the command exactly as the README has it.
NOT_RUN = {
    norm("make test"): "the test suite itself: running it from a test would recurse",
}
# Commands that need something this machine does not have: their real run is replaced by `make -n`, and the
# printed commands must include these lines.
DRY_RUN = {
    norm("make sif SIF=labnote.sif"): (
        "needs Apptainer (and root or --fakeroot) to build the image",
        ["apptainer build labnote.sif apptainer.def"],
    ),
}
# Commands run for real in a copy: `extra_set` is appended to SET= (omit it for commands without a size, e.g.
# `make lint`: {"writes": []}); `writes`: the files the README says the command writes (a report.md must say
# "completed"); `rerun_is_noop`: a second run runs no stage.
TINY_SET = (
    "model.dim=32 model.layers=1 model.heads=2 model.max_seq_len=64 data.seq_len=32 "
    "data.tokenizer.vocab_size=300 train.steps=6 train.batch_size=4 train.warmup_steps=2 "
    "train.log_every=2 train.eval_every=3 train.eval_batches=2 train.checkpoint_every=6 "
    "eval.perplexity.batch_size=4 eval.perplexity.max_batches=2 eval.harness.batch_size=8"
)
SMOKE_TASKS = "'eval.harness.tasks=[{task: labnote_cloze, limit: 8}, {task: labnote_nextword, num_fewshot: 3, limit: 8}, {task: labnote_rolling, limit: 4}]'"  # noqa: E501
WIKITEXT_FILES = {"train": "wiki.train.raw", "validation": "wiki.valid.raw", "test": "wiki.test.raw"}
RUN = {
    norm("make report EXP=smoke"): {
        "extra_set": f"{TINY_SET} data.max_documents=40 {SMOKE_TASKS}",
        "writes": ["reports/smoke/report.md"],
        "rerun_is_noop": True,
    },
    norm(
        'make report EXP=wikitext2_cpu SET="data.source.type=files data.source.train=[data/wikitext-2/wiki.train.raw]'
        ' data.source.validation=[data/wikitext-2/wiki.valid.raw] data.source.test=[data/wikitext-2/wiki.test.raw]"'
    ): {
        "extra_set": f"{TINY_SET} eval.harness.tasks=[]",
        "writes": ["reports/wikitext2_cpu/report.md"],
        "wikitext_files": True,
    },
}


def test_every_readme_command_is_accounted_for():
    commands = readme_commands()
    assert norm("make report EXP=smoke") in commands  # the parser found the blocks
    unknown = [c for c in commands if c not in NOT_RUN and c not in DRY_RUN and c not in RUN]
    assert not unknown, (
        "README commands neither run by tests/test_readme.py nor listed there as not runnable (with the reason): "
        f"{unknown}"
    )
    stale = [c for c in (*NOT_RUN, *DRY_RUN, *RUN) if c not in commands]
    assert not stale, f"tests/test_readme.py lists commands the README no longer has: {stale}"


def make(root: Path, words: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = pipeline_env()
    env.pop("PYTHONPATH")  # the copy must work on its own
    return subprocess.run(
        [*words, f"PY={sys.executable}"], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def with_tiny_set(words: list[str], extra: str) -> list[str]:
    out, done = [], False
    for word in words:
        if word.startswith("SET="):
            word, done = f"{word} {extra}", True
        out.append(word)
    return out if done else [*out, f"SET={extra}"]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return project_copy(tmp_path_factory.mktemp("clone"))


@pytest.mark.parametrize("command", sorted(DRY_RUN), ids=lambda c: shlex.split(c)[1])  # the target
def test_dry_run_commands_print_what_they_would_run(clone: Path, command: str):
    words = shlex.split(command)
    assert words[0] == "make"
    proc = make(clone, ["make", "-n", *words[1:]], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [line.split() for line in proc.stdout.splitlines()]  # Make leaves double spaces where a $(if) is empty
    for line in DRY_RUN[command][1]:
        assert line.split() in printed, proc.stdout


def write_wikitext_standins(root: Path) -> dict[str, int]:
    """The real WikiText-2 is not shipped: small files with the documented names, in WikiText's raw layout
    (` = Heading = ` lines and paragraphs, separated by lines holding one space), each split's text distinct.
    Returns the number of documents (non-blank lines) in each file."""
    from pipeline.data.sources import kjv_chapters

    chapters = kjv_chapters()
    picks = {"train": chapters[:30], "validation": chapters[100:104], "test": chapters[200:205]}
    counts = {}
    (root / "data" / "wikitext-2").mkdir(parents=True)
    for split, docs in picks.items():
        lines = [" "]
        for i, doc in enumerate(docs):
            lines += [f" = {split.title()} chapter {i} = ", " ", f" {doc} ", " "]
        (root / "data" / "wikitext-2" / WIKITEXT_FILES[split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = 2 * len(docs)
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(RUN), ids=lambda c: " ".join(shlex.split(c)[1:3]))
def test_readme_command_runs_as_written(tmp_path: Path, command: str):
    spec = RUN[command]
    root = project_copy(tmp_path)
    words = shlex.split(command)
    if spec.get("wikitext_files"):
        # First without the data: the README promises one error line and exit code 2.
        missing = make(root, words, timeout=120)
        assert missing.returncode == 2, missing.stderr[-2000:]
        assert "error: SET: data.source.train[0]: file not found: data/wikitext-2/wiki.train.raw" in missing.stderr
        counts = write_wikitext_standins(root)
    if spec.get("extra_set"):
        words = with_tiny_set(words, spec["extra_set"])
    proc = make(root, words)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for rel in spec["writes"]:
        assert (root / rel).is_file(), f"{command} did not write {rel}"
        if rel.endswith("report.md"):
            assert re.search(
                r"\*\*Status: (✅|⚠️|❌) completed[^*]*\*\* — 6 of 6 configured steps",
                (root / rel).read_text(encoding="utf-8"),
            )
    if spec.get("rerun_is_noop"):  # "Run it again and nothing reruns"
        again = make(root, words)
        assert again.returncode == 0 and " -m pipeline " not in again.stdout, again.stdout
    if spec.get("wikitext_files"):
        stats = json.loads((root / "runs" / "wikitext2_cpu" / "prepared" / "stats.json").read_text())
        assert stats["source"] == "files:data/wikitext-2/wiki.train.raw"
        # Each split is its own file, every heading and paragraph one document (nothing carved from train).
        assert {s: v["documents"] for s, v in stats["splits"].items()} == counts


def test_layout_names_every_module_of_each_subpackage():
    entries = dict(layout_entries())
    modules: dict[str, set[str]] = {}
    for f in tracked_files():
        parts = f.split("/")
        if len(parts) == 3 and parts[0] == "pipeline" and parts[2].endswith(".py") and parts[2] != "__init__.py":
            modules.setdefault(f"pipeline/{parts[1]}/", set()).add(parts[2])
    for package, names in sorted(modules.items()):
        desc = entries.get(package, "")
        missing = sorted(n for n in names if not re.search(rf"(?<![\w.]){re.escape(n)}", desc))
        assert not missing, f"README Layout line {package} does not name {missing}"
