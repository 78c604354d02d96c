"""The train stage as your own command (`train.command`): labnote runs it, follows its logs, records what happened.

    train:
      steps: 40
      command: "python examples/plain_pytorch/train.py --steps {train.steps} --lr {train.lr} --out {run}/external"
      logs: {from: jsonl, path: "{run}/external/metrics.jsonl"}

- Placeholders: `{run}` (the run directory, relative to the project root), `{exp}`, `{seed}` (`train.seed`) and any
  key of the resolved config (`{train.lr}`, `{model.dim}`), with an optional format spec (`{train.lr:.0e}`). Values
  enter the command shell-quoted. A literal brace is written `{{`/`}}` (so a shell `${VAR}` is `${{VAR}}`; `$VAR`
  needs nothing). An unknown placeholder is one error line at load (exit 2).
- The command runs under bash from the project root, in its own process group, with this stage's interpreter
  folder first on PATH (`python` is the venv's, or the container's under RUNTIME=…); stdout/stderr are appended
  to `runs/<EXP>/train/stdout.log` / `stderr.log`.
- Its logs are read by the importer `train.logs.from` names (pipeline/importers/: the code `make import` uses),
  while it runs (a progress bar: step, loss; `train/metrics.jsonl` kept current for `make peek`) and at its end.
- SIGTERM is passed to the command's process group and the stage exits 143 without `train/DONE`: the next
  `make train` runs the command again with the same `{run}`, so a script that resumes from its folder resumes.
- Exit code 0 -> `train/DONE` status completed; another -> status failed with the exit code and the last lines
  of stderr (the report says so, and `make report` exits 1 after writing it). A command that is not found, or
  logs that never appear, are one error line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import string
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.dotted import flatten
from pipeline.errors import UserError

log = logging.getLogger("pipeline.train")

STDERR_TAIL = 12  # lines of stderr a failed report shows
POLL_S = 1.0  # how often the logs are looked at while the command runs
READ_SHARE = 0.05  # the most of the stage's time spent re-reading a growing log (the importers read it whole)
# Shell words that are not programs on PATH: the not-found check leaves them to the shell.
SHELL_WORDS = {"cd", "exec", "export", "set", "source", ".", "if", "for", "while", "until", "case", "{", "(", "!",
               "time", "eval", "env", "true", "false", "echo", "test", "[", "[[", "ulimit", "umask"}  # fmt: skip
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


class CommandError(UserError):
    """The command cannot be started, or ran but left nothing to read."""


# --------------------------------------------------------------------------- placeholders
def placeholder_values(cfg, run_dir: Path | str | None = None) -> dict:
    """What `{name}` may name: run, exp, seed and every key of the resolved config (dotted)."""
    tree = cfg.model_dump(mode="json")
    values = {k: v for k, v in flatten(tree).items() if k not in ("train.command",)}
    run = Path("runs") / cfg.name if run_dir is None else Path(run_dir)
    values.update(run=str(run), exp=cfg.name, seed=cfg.train.seed)
    return values


def expand(template: str, values: dict, key: str, quote: bool = False) -> str:
    """`template` with its placeholders filled in; a bad one raises ValueError starting with `key` (the schema's
    error shape: the loader names the file that set it)."""
    out = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{key}: {exc} in {template!r} (a literal brace is written {{{{ or }}}})") from None
    for literal, name, spec, conversion in parsed:
        out.append(literal)
        if name is None:
            continue
        shown = "{" + name + (f":{spec}" if spec else "") + "}"
        if name not in values or conversion:
            hint = "use {run}, {exp}, {seed} or a config key such as {train.lr}; a literal brace is {{ or }}"
            raise ValueError(f"{key}: unknown placeholder {shown}; {hint}")
        value = values[name]
        if value is None:
            raise ValueError(f"{key}: placeholder {shown}: {name} has no value in this experiment")
        try:
            text = format(value, spec) if spec else str(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}: placeholder {shown}: {exc}") from None
        out.append(shlex.quote(text) if quote else text)
    return "".join(out)


class Expanded:
    """The command, its logs and checkpoint as they run for one run directory."""

    def __init__(self, cfg, run_dir: Path | str | None = None):
        tc, values = cfg.train, placeholder_values(cfg, run_dir)
        self.values = {k: values[k] for k in _used(tc, values)}
        self.command = expand(tc.command, values, "train.command", quote=True)
        self.logs_from = tc.logs.from_
        self.logs = expand(tc.logs.path, values, "train.logs.path")
        self.checkpoint = expand(tc.checkpoint, values, "train.checkpoint") if tc.checkpoint else None

    def stamp(self) -> dict:
        """What the train stamp hashes beyond the train section: the command as run and its placeholders' values."""
        return {"command": self.command, "values": self.values, "logs": [self.logs_from, self.logs],
                "checkpoint": self.checkpoint}  # fmt: skip


def _used(tc, values: dict) -> list[str]:
    names = []
    for template in (tc.command, tc.logs.path if tc.logs else None, tc.checkpoint):
        with contextlib.suppress(ValueError):
            names += [n for _, n, _, _ in string.Formatter().parse(template or "") if n in values]
    return sorted(set(names))


def check_placeholders(cfg) -> None:
    """At load (the schema's cross-checks): every placeholder names something; ValueError otherwise."""
    Expanded(cfg)


# --------------------------------------------------------------------------- the environment
def stage_env() -> dict[str, str]:
    """This process's environment with its interpreter's folder first on PATH (the venv's or the container's
    `python`; not resolved through symlinks, which would leave the venv)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def program(command: str) -> str | None:
    """The program the command starts (after VAR=value words), or None where the shell decides."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise CommandError(f"train.command: cannot be parsed as a shell command ({exc}): {command!r}") from None
    words = list(words)
    while words and ASSIGNMENT.fullmatch(words[0]):
        words.pop(0)
    if not words:
        raise CommandError(f"train.command: no program to run in {command!r}")
    first = words[0]
    return None if first in SHELL_WORDS or any(c in first for c in "$`;|&<>()") else first


def check_runnable(command: str, env: dict[str, str]) -> None:
    first = program(command)
    if first is None:
        return
    if "/" in first:
        if not (Path(first).is_file() and os.access(first, os.X_OK)):
            raise CommandError(f"train.command: {first}: no such executable file (relative to the project root)")
    elif shutil.which(first, path=env.get("PATH")) is None:
        raise CommandError(f"train.command: {first}: command not found on PATH (the stage's environment first)")


def script_of(command: str) -> Path | None:
    """The script a command runs (the first word after the program that names a file), for its git state."""
    try:
        words = [w for w in shlex.split(command) if not ASSIGNMENT.fullmatch(w)]
    except ValueError:
        return None
    for word in words[:4]:
        path = Path(word)
        if path.suffix and path.is_file():
            return path
    return None


def script_git(command: str) -> dict | None:
    """The script's own repository and its state, when it lives in another repository than this project."""
    from pipeline.provenance import git_state, git_toplevel

    script = script_of(command)
    if script is None:
        return None
    repo, ours = git_toplevel(script.resolve().parent), git_toplevel(Path.cwd())
    if repo is None or repo == ours:
        return {"script": str(script), "repository": "this project" if repo else None}
    return {"script": str(script), "repository": str(repo), **git_state(repo)}


# --------------------------------------------------------------------------- logs -> run directory
def read_logs(exp: Expanded, quiet: bool):
    """The command's logs through its importer (pipeline/importers/), or None while there are none to read."""
    from pipeline.importers import read_source

    path = Path(exp.logs)
    if quiet and not path.exists():
        return None
    try:
        return read_source(path, exp.logs_from)
    except UserError:
        if quiet:
            return None  # not written yet, or caught mid-write: the next poll reads it again
        raise


def write_rows(run_root: Path, imp) -> None:
    from pipeline import records

    records.METRICS.write_rows(run_root, imp.metrics)
    records.VALIDATION.write_rows(run_root, imp.validation)
    if imp.extra:
        records.EXTRA.write_rows(run_root, imp.extra)
    else:
        records.EXTRA.at(run_root).unlink(missing_ok=True)


class ReadPacer:
    """When to read the logs again: every POLL_S at first, then no sooner than the last read's cost / READ_SHARE
    after it, so a log that grows to a million lines (each read parsing all of it) costs ≤ 5 % of the stage's
    time, not a quadratic total. The final read at the command's exit is not paced.

    >>> pacer = ReadPacer()
    >>> pacer.due(0.0), pacer.read(0.0, 0.5), pacer.due(5.0), pacer.due(10.5)
    (True, None, False, True)
    """

    def __init__(self):
        self.next = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next

    def read(self, started: float, ended: float) -> None:
        self.next = ended + max(POLL_S, (ended - started) / READ_SHARE)


def _signature(path: Path) -> tuple:
    """Changes when the logs do (a folder: its newest file), so an unchanged log is not parsed again."""
    if not path.exists():
        return ()
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def _tail(path: Path, start: int, lines: int = STDERR_TAIL) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            text = fh.read()[-64 * 1024 :].decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _stale_folders(run, exp: Expanded) -> list[Path]:
    """Our outputs and the folders the command writes into inside the run directory (its logs, its checkpoint)."""
    folders = [run.train, run.eval]
    for target in (exp.logs, exp.checkpoint):
        if target is None:
            continue
        try:
            rel = Path(target).resolve().relative_to(run.root.resolve())
        except ValueError:
            continue
        if rel.parts and rel.parts[0] not in ("stamps", "archive", "jobs", "config.yaml", "provenance.json"):
            folders.append(run.root / rel.parts[0])
    return list(dict.fromkeys(folders))


def archive_if_stale(run, exp: Expanded, train_hash: str) -> None:
    """Outputs from other train inputs move to archive/<UTC time>/ (never deleted); the same inputs keep them, so
    a rerun after an interruption finds the command's own folder as it left it."""
    from pipeline import records

    plan = records.PLAN.read(run.root)
    if not plan or plan.train_hash == train_hash:
        return
    dest = run.archive / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for folder in _stale_folders(run, exp):
        if folder.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.move(str(folder), dest / folder.name)
    log.info("train inputs changed: earlier outputs moved to %s", dest)


# --------------------------------------------------------------------------- the stage
def run_external(cfg, run_dir: Path) -> Path:
    from tqdm import tqdm

    from pipeline import records
    from pipeline.config.resolve import config_hash, stage_hash
    from pipeline.provenance import note_launch, record_fact
    from pipeline.rundir import RunDir

    run = RunDir(run_dir)
    try:
        exp = Expanded(cfg, run_dir)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    env = stage_env()
    check_runnable(exp.command, env)
    train_hash = stage_hash(run_dir, "train") or config_hash(cfg)
    archive_if_stale(run, exp, train_hash)
    run.train.mkdir(parents=True, exist_ok=True)
    run.train_done.unlink(missing_ok=True)
    records.PLAN.write(run.root, {"steps_planned": cfg.train.steps, "train_hash": train_hash})
    out_path, err_path = records.TRAIN_STDOUT.at(run.root), records.TRAIN_STDERR.at(run.root)
    err_start = err_path.stat().st_size if err_path.is_file() else 0
    started = datetime.now(UTC).isoformat(timespec="seconds")
    log.info("train.command: %s (stdout/stderr: %s, %s)", exp.command, out_path, err_path)
    fact = {"command": exp.command, "values": exp.values, "logs": exp.logs, "logs_from": exp.logs_from,
            "checkpoint": exp.checkpoint, "exit_code": None, "started_utc": started, "duration_s": None,
            "stdout": records.TRAIN_STDOUT.path, "stderr": records.TRAIN_STDERR.path,
            "script_git": script_git(exp.command)}  # fmt: skip
    record_fact(run, "train_command", fact)  # now: `make peek` shows what runs while it runs
    bash = shutil.which("bash") or "/bin/sh"
    t0 = time.perf_counter()
    with open(out_path, "ab") as out, open(err_path, "ab") as err:
        child = subprocess.Popen([bash, "-c", exp.command], stdout=out, stderr=err, env=env, start_new_session=True)
    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        with contextlib.suppress(ProcessLookupError):  # it ended already
            os.killpg(child.pid, signum)  # the whole group: a launcher's workers stop too

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    bar = tqdm(total=cfg.train.steps, desc="train (command)", unit="step", dynamic_ncols=True, disable=None)
    seen, imp, pacer = (), None, ReadPacer()
    try:
        while True:
            try:
                code = child.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                break  # the final read below takes what the command left
            if not pacer.due(time.perf_counter()):
                continue
            signature = _signature(Path(exp.logs))
            if signature != seen:
                read_from = time.perf_counter()
                seen, latest = signature, read_logs(exp, quiet=True)
                if latest is not None:
                    imp = latest
                    write_rows(run.root, imp)
                    _progress(bar, imp)
                pacer.read(read_from, time.perf_counter())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
    duration = time.perf_counter() - t0
    exit_code = 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + n
    fact.update(exit_code=exit_code, duration_s=round(duration, 3))
    record_fact(run, "train_command", fact)
    note_launch(run, "train", command=exp.command, exit_code=exit_code)
    if exit_code == 0 and not stopping and not Path(exp.logs).exists():
        raise CommandError(f"train.logs.path: {exp.logs}: the command exited 0 but no logs appeared there")
    final = read_logs(exp, quiet=exit_code != 0 or bool(stopping))  # a clean exit must have left readable logs
    imp = final or imp
    if imp is not None:
        write_rows(run.root, imp)
    if stopping:
        log.warning("train.command stopped by signal %d (exit %d); rerun to run it again", stopping[0], exit_code)
        raise SystemExit(143)
    if exit_code == 0 and imp is None:
        raise CommandError(f"train.logs.path: {exp.logs}: the command exited 0 but no logs appeared there")
    planned = cfg.train.steps or (imp.steps_planned if imp else None)
    done = imp.done if imp else 0
    summary = {
        "status": "completed" if exit_code == 0 else "failed",
        "steps_done": done,
        "steps_planned": planned,
        "train_hash": train_hash,
        "external": True,
        "command": exp.command,
        "exit_code": exit_code,
        "duration_s": round(duration, 3),
        "segments": len({r.get("segment", 0) for r in imp.metrics}) if imp and imp.metrics else 0,
        "summary": imp.summary if imp else {},
    }
    if exit_code != 0:
        summary["stderr_tail"] = _tail(err_path, err_start)
        summary["status_why"] = (summary["stderr_tail"] or [""])[-1]
        log.error("train.command exited %d at step %s of %s; see %s", exit_code, done, planned or "?", err_path)
    records.TRAIN_DONE.write(run.root, summary)
    records.cache_logs(run.root)
    return run.train


def _progress(bar, imp) -> None:
    rows = imp.metrics
    step = imp.done
    if bar.total is None and imp.steps_planned:
        bar.total = imp.steps_planned
    bar.n = step
    loss = next((r["loss"] for r in reversed(rows) if isinstance(r.get("loss"), (int, float))), None)
    if loss is not None:
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    bar.refresh()
