"""One lock per run directory: `runs/<EXP>/.lock`, held by every stage and by the whole of `make report`.

The lock is a POSIX `flock` on `runs/<EXP>/.lock` (what `filelock.UnixFileLock` takes too, so the two
interoperate); this module uses only the standard library so that Make can run it with the host's python
even when the stages run in a container. A holder writes who it is into `runs/<EXP>/.lock.info` (pid, host,
command, since when); a second invocation exits 2 with one line naming it. The kernel releases the lock when
its holder dies, so a lock left by a dead process is simply taken over — with a warning naming it.

Nested commands (the stages `make report` runs inside its lock) find `LABNOTE_LOCK=<lock path>` in their
environment and, while that lock is held, do not lock again. Job-array tasks that write separate parts
(`make bench-part`) take it *shared*: many tasks at once, but never together with an exclusive holder.

As a command (what the Makefile runs):

    python -m pipeline.lock runs/x [--shared] [--dry-run] -- make _report EXP=x
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

ENV = "LABNOTE_LOCK"
LOCK_NAME, INFO_NAME = ".lock", ".lock.info"


class LockBusy(Exception):
    """Another process holds the run's lock; the message is one line naming it."""

    exit_code = 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_info(run_dir: Path) -> dict:
    try:
        info = json.loads((run_dir / INFO_NAME).read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def holder(run_dir: Path) -> dict | None:
    """Who holds the run's lock, read from .lock.info without touching the lock (`make peek` must never block
    a stage); None when nobody does (no record, or a holder on this host that is gone)."""
    info = _read_info(Path(run_dir))
    if not info or not (Path(run_dir) / LOCK_NAME).exists():
        return None
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return None
    return info


def describe(info: dict) -> str:
    if not info:
        return "another labnote command (no holder recorded: a job-array task holding it shared?)"
    return (
        f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: "
        f"{info.get('command') or '(unknown command)'}"
    )


def _held_by_ancestor(lock_path: Path) -> bool:
    """Whether our environment says a parent holds this very lock (and it is still held)."""
    named = os.environ.get(ENV)
    if not named:
        return False
    try:
        if os.path.realpath(named) != os.path.realpath(lock_path):
            return False
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # held: by our ancestor (only its descendants inherit the variable)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _open_locked(lock_path: Path, shared: bool) -> int:
    """Open and flock the lock file without waiting; retry if it was unlinked between open and flock."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockBusy from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed it after we opened it: lock the new one


@contextmanager
def run_lock(run_dir: Path, command: str | None = None, shared: bool = False, warn=None):
    """Hold `run_dir/.lock` for the block (exclusive unless `shared`); `LockBusy` if someone else holds it."""
    run_dir = Path(run_dir)
    lock_path = run_dir / LOCK_NAME
    if _held_by_ancestor(lock_path):
        yield
        return
    # Folders this lock creates (the run's, and runs/ itself on a fresh clone) are removed again if left empty.
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_info(run_dir)
    try:
        fd = _open_locked(lock_path, shared)
    except LockBusy:
        # The holder writes who it is right after taking the lock: give that moment before naming it.
        deadline = time.monotonic() + 2.0
        while not previous and time.monotonic() < deadline:
            time.sleep(0.05)
            previous = _read_info(run_dir)
        where = f"{run_dir} is in use by {describe(previous)}"
        raise LockBusy(f"{where} (lock {lock_path}); wait for it to finish or stop it") from None
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    if previous and not shared:
        pid, host = previous.get("pid"), previous.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            warn(f"{run_dir}: taking over the lock of {describe(previous)} — that process is gone")
        elif host != socket.gethostname():
            warn(f"{run_dir}: taking over the lock last held by {describe(previous)} (released)")
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join(sys.argv),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "shared": shared,
    }
    if not shared:
        tmp = run_dir / f"{INFO_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
        os.replace(tmp, run_dir / INFO_NAME)
    before = os.environ.get(ENV)
    os.environ[ENV] = str(lock_path.resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        if not shared:
            # Unlink while holding it (a waiter that opened the old file notices and retries on the new one).
            for name in (INFO_NAME, LOCK_NAME):
                with suppress(FileNotFoundError):
                    (run_dir / name).unlink()
            for folder in created:  # innermost first; stops at the first folder something was written into
                try:
                    folder.rmdir()
                except OSError:
                    break
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") < 1:
        print("usage: python -m pipeline.lock RUN_DIR [--shared] [--dry-run] -- COMMAND ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1 :]
    run_dir = Path(opts[0])
    if "--dry-run" in opts:  # `make -n`: show what would run, take nothing
        return subprocess.call(cmd)
    try:
        with run_lock(run_dir, " ".join(cmd), shared="--shared" in opts):
            code = _call(cmd)
    except LockBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {run_dir}: cannot take the run's lock: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return code


def jobserver_fds() -> tuple[int, ...]:
    """The pipe of make's jobserver (make 4.3: `--jobserver-auth=R,W` in MAKEFLAGS), kept open for the make this
    runs, so that it shares the parent's -j slots instead of warning and running alone."""
    for word in os.environ.get("MAKEFLAGS", "").split():
        if word.startswith(("--jobserver-auth=", "--jobserver-fds=")) and "," in word:
            try:
                fds = tuple(int(x) for x in word.split("=", 1)[1].split(","))
                for fd in fds:
                    os.fstat(fd)
                return fds
            except (ValueError, OSError):
                return ()
    return ()


def _call(cmd: list[str]) -> int:
    """Run the command; Ctrl-C reaches it through the terminal, SIGTERM (a scheduler) is passed on."""
    child = subprocess.Popen(cmd, pass_fds=jobserver_fds())
    previous = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s)) for sig in (signal.SIGTERM,)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
