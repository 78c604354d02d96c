"""Run one member of a repeat/sweep and record how it ended: `runs/<EXP>/<member>/member.json` + `member.log`.

The Makefile runs it for every member (`member/<goal>/<member>`), under `make -k -jJOBS`:

    python -m pipeline.member runs/x seed-1 --goal report --jobs 2 -- make report EXP=x MEMBER=seed-1

It passes the member's make output through (each line prefixed with the member, since members run side by
side), keeps a copy in `member.log`, limits the threads of each member to the cores divided by `--jobs`
(OMP/MKL, which torch reads at start; a value already in the environment wins), and writes `member.json`:
status, exit code and the last `error:` line. The aggregate report reads it, so a member that failed is a row
with its error, not a missing run. `--summary runs/x` prints the failed members and exits 1 if there are any.

Standard library only (with pipeline.atomic/redact): like pipeline/lock.py, the host's python runs it under
any RUNTIME.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.atomic import write_if_changed
from pipeline.lock import jobserver_fds
from pipeline.redact import scrub

STATUS, LOG = "member.json", "member.log"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_member(jobs: int, cores: int | None = None) -> int:
    """>>> threads_per_member(4, cores=16), threads_per_member(3, cores=2)
    (4, 1)
    """
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // max(1, jobs))


def last_error(lines: list[str]) -> str | None:
    """The line that says why: the last `error:` line, else the last line that is not empty.

    >>> last_error(["[x] ok", "error: train.lr: expected a number", "make: *** [Makefile:9] Error 2"])
    'error: train.lr: expected a number'
    """
    for line in reversed(lines):
        if line.strip().startswith("error:"):
            return line.strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), None)


def run_member(run_root: Path, member: str, goal: str, jobs: int, cmd: list[str]) -> int:
    folder = run_root / member
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if jobs > 1:
        for var in THREAD_VARS:
            env.setdefault(var, str(threads_per_member(jobs)))
    prefix = f"[{member}] "
    tail: list[str] = []
    with open(folder / LOG, "w", encoding="utf-8") as log:
        child = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            bufsize=1,
            pass_fds=jobserver_fds(),
        )
        # A scheduler's SIGTERM reaches the member's make (its stages checkpoint and exit).
        previous = signal.signal(signal.SIGTERM, lambda s, _f: child.send_signal(s))
        try:
            for line in child.stdout:
                line = scrub(line)
                sys.stdout.write(prefix + line)
                sys.stdout.flush()
                log.write(line)
                tail = [*tail[-49:], line.rstrip("\n")]
            code = child.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
    code = 128 - code if code < 0 else code
    status = {
        "status": "completed" if code == 0 else "failed",
        "exit_code": code,
        "goal": goal,
        "error": None if code == 0 else last_error(tail),
        "log": LOG,
    }
    write_if_changed(folder / STATUS, json.dumps(status, indent=2) + "\n")
    return code


def summary(run_root: Path) -> int:
    """One line for the members that did not complete; 1 if there are any."""
    try:
        members = json.loads((run_root / "members.json").read_text(encoding="utf-8"))["members"]
    except (OSError, ValueError, KeyError, TypeError):
        print(f"error: {run_root}/members.json: missing or damaged; run 'make resolve' first", file=sys.stderr)
        return 2
    failed = []
    for m in members:
        try:
            status = json.loads((run_root / m["run_dir"] / STATUS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            failed.append(f"{m['run_dir']} (did not record how it ended)")
            continue
        if status.get("status") != "completed":
            failed.append(f"{m['run_dir']} (exit {status.get('exit_code')}: {status.get('error')})")
    if failed:
        print(f"error: {len(failed)} of {len(members)} members failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--summary"] and len(argv) == 2:
        return summary(Path(argv[1]))
    usage = "usage: python -m pipeline.member RUN_ROOT MEMBER [--goal G] [--jobs N] -- COMMAND ... | --summary RUN_ROOT"
    if "--" not in argv or argv.index("--") < 2:
        print(usage, file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    run_root, member, rest = Path(opts[0]), opts[1], opts[2:]
    flags = dict(zip(rest[::2], rest[1::2], strict=False))
    try:
        jobs = int(flags.get("--jobs", "1"))
    except ValueError:
        print(f"error: JOBS: expected a number of members to run at once, got {flags['--jobs']!r}", file=sys.stderr)
        return 2
    return run_member(run_root, member, flags.get("--goal", "report"), jobs, cmd)


if __name__ == "__main__":
    sys.exit(main())
