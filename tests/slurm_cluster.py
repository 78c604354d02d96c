"""A real single-node Slurm cluster on localhost, for tests that submit jobs with sbatch.

``LocalSlurm(directory)`` starts munged, slurmctld and slurmd as root with every file (config, state, spool,
pid files, logs, the munge socket) inside ``directory``, and stops all three by PID on exit. Nothing is
written to /etc or /var, and the daemons listen on free ports picked at start, so two clusters (or a system
Slurm) can run side by side and a second test run never trips over a first one.

Requirements: root, and the Debian packages from ``.ci/install-slurm.sh`` (slurm-wlm, which pulls in
munge). Without them the ``slurm`` fixture skips, unless ``LABNOTE_REQUIRE_SLURM=1`` is set (CI), in which
case it fails. There is no slurmdbd, so no ``sacct``: ``wait_for_job`` reads ``scontrol show job``, which
keeps finished jobs for MinJobAge (300 s by default).

    from slurm_cluster import slurm          # the fixture

    def test_x(slurm, tmp_path):
        job = slurm.submit("--wrap", "echo hi", cwd=tmp_path)
        assert slurm.wait_for_job(job).state == "COMPLETED"
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_ENV = "LABNOTE_REQUIRE_SLURM"
DAEMONS = ("slurmd", "slurmctld", "munged")  # the order they are stopped in
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")
# sbin is not always on a non-login root PATH; the Debian packages put the daemons there.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
TERMINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "SPECIAL_EXIT",
    "REVOKED",
}
DEFAULT_MUNGE_KEY = Path("/etc/munge/munge.key")


def which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def unavailable_reason() -> str | None:
    """Why a local cluster cannot be started here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a local Slurm cluster needs root (slurmd runs jobs as their user)"
    missing = [b for b in (*DAEMONS, *CLIENTS, "runuser") if which(b) is None]
    if missing:
        return f"Slurm/munge not installed (missing {', '.join(missing)}); run `bash .ci/install-slurm.sh`"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (install the munge package)"
    if not DEFAULT_MUNGE_KEY.is_file():
        return f"{DEFAULT_MUNGE_KEY} is missing; run `bash .ci/install-slurm.sh`"
    return None


def require_slurm() -> None:
    """Skip the calling test when Slurm is unavailable; fail instead when LABNOTE_REQUIRE_SLURM=1 (CI)."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _real_memory_mb() -> int:
    """Memory to declare for the node: below the machine's, or slurmd reports 'Low RealMemory' and drains."""
    total_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_kb = int(line.split()[1])
                break
    except OSError:
        pass
    total_mb = total_kb // 1024
    if total_mb > 4096:
        return total_mb - 2048  # leave 2 GiB of headroom
    return max(1, total_mb // 2)


def _cpus() -> int:
    # The CPUs this process may run on (a container may see more than it gets). Declaring fewer than slurmd
    # detects is fine; declaring more would drain the node.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (PID 1 in a container may never reap a daemon)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    # The state is the first field after the parenthesised command name (which may contain spaces).
    return stat[stat.rindex(")") + 2 :][:1] not in ("Z", "X")


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class JobResult:
    """How a job ended, from `scontrol show job` (one record per array task)."""

    job_id: str
    state: str  # COMPLETED when every record completed, else the first record that did not
    exit_code: int
    signal: int
    records: list[dict[str, str]] = field(default_factory=list)


class SlurmError(RuntimeError):
    pass


class LocalSlurm:
    """munged + slurmctld + slurmd on localhost, everything under `directory` (created if needed).

    Every ancestor of `directory` must be searchable by the `munge` user (munged runs as munge and its
    socket lives in there); `/tmp/<something>` works, pytest's `tmp_path` (under a 0700 directory) does not,
    which is why the `slurm` fixture uses `tempfile.mkdtemp`.
    """

    def __init__(self, directory: str | os.PathLike[str], *, start_timeout: float = 60.0):
        self.base = Path(directory).resolve()
        self.start_timeout = start_timeout
        self.conf = self.base / "slurm.conf"
        self.munge_dir = self.base / "munge"
        self.munge_socket = self.munge_dir / "munge.socket.2"
        self.pid_files = {
            "munged": self.munge_dir / "munged.pid",
            "slurmctld": self.base / "slurmctld.pid",
            "slurmd": self.base / "slurmd.pid",
        }
        self.log_files = {
            "munged": self.munge_dir / "munged.log",
            "slurmctld": self.base / "slurmctld.log",
            "slurmd": self.base / "slurmd.log",
        }  # (each daemon's stdout/stderr goes to <directory>/<name>.out)
        self.pids: dict[str, int] = {}  # daemon name -> PID (from its pid file), recorded as each one starts
        self.procs: dict[str, subprocess.Popen] = {}  # what we launched (for munged: runuser, its parent)
        self.ports: tuple[int, int] | None = None  # (slurmctld, slurmd)
        self.env = self._client_env()

    # ----------------------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalSlurm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        require_slurm()
        try:
            self._prepare_dirs()
            self._start_munged()
            self._write_conf()
            self._start_slurmctld()
            self._start_slurmd()
            self._wait_node_idle()
        except BaseException:
            self.stop()  # whatever did start must not outlive a failed start
            raise

    def stop(self, timeout: float = 20.0) -> None:
        """Cancel any jobs, then stop slurmd, slurmctld and munged by PID (SIGTERM, then SIGKILL)."""
        if "slurmctld" in self.pids and process_alive(self.pids["slurmctld"]):
            self._cancel_all_jobs(timeout=timeout / 2)
        for name in DAEMONS:
            pid = self.pids.get(name) or self._read_pid(name)
            if pid is not None:
                self._terminate(name, pid, timeout)
            proc = self.procs.get(name)
            if proc is not None:  # reap it (for munged, runuser exits once munged has)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)

    # -------------------------------------------------------------------------------------------------- client
    def run(self, *args: str, check: bool = True, timeout: float = 30.0, **kw) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster (SLURM_CONF set) and capture its output."""
        exe = which(args[0]) or args[0]
        proc = subprocess.run([exe, *args[1:]], env=self.env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def submit(self, *sbatch_args: str, cwd: str | os.PathLike[str] | None = None) -> str:
        """`sbatch --parsable ARGS` in `cwd`; returns the job id."""
        out = self.run("sbatch", "--parsable", *sbatch_args, cwd=cwd).stdout.strip()
        job_id = out.split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"unexpected sbatch output: {out!r}")
        return job_id

    def job_records(self, job_id: str | int) -> list[dict[str, str]]:
        """`scontrol -o show job ID` parsed: one dict per record (array tasks are separate records)."""
        out = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout
        records = []
        for line in out.splitlines():
            if line.strip():
                # Values have no spaces except a few free-text fields we do not use (e.g. Comment).
                records.append(dict(re.findall(r"(\w[\w:/.-]*)=(\S*)", line)))
        return records

    def wait_for_job(self, job_id: str | int, timeout: float = 60.0, poll: float = 0.2) -> JobResult:
        """Poll until every record of the job is in a terminal state; return its final state and exit code."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.job_records(job_id)
            states = [r.get("JobState", "") for r in records]
            if records and all(s in TERMINAL_STATES for s in states):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout}s (states {states})\n" + self.logs())
            time.sleep(poll)
        bad = [r for r in records if r.get("JobState") != "COMPLETED"]
        chosen = bad[0] if bad else records[0]
        code, _, sig = chosen.get("ExitCode", "0:0").partition(":")
        return JobResult(str(job_id), chosen["JobState"], int(code or 0), int(sig or 0), records)

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {name} ({path}) ---\n{_tail(path, lines)}" for name, path in self.log_files.items())

    # ---------------------------------------------------------------------------------------------- internals
    def _client_env(self) -> dict[str, str]:
        # Drop Slurm variables from the outer environment (tests may themselves run inside a Slurm job, and
        # SBATCH_* variables act as sbatch options), then point every client at this cluster's config.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_"))
        }
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = SEARCH_PATH
        return env

    def _prepare_dirs(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o711)
        for parent in self.base.parents:
            if not parent.stat().st_mode & 0o001:
                raise SlurmError(
                    f"{parent} is not searchable by other users, so munged (running as 'munge') "
                    f"cannot reach {self.munge_dir}; use a directory under /tmp"
                )
        for sub in ("state", "spool"):
            (self.base / sub).mkdir(exist_ok=True)

    def _start_munged(self) -> None:
        # munged refuses a socket directory that others cannot search (clients connect as any user): 0711.
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir(exist_ok=True)
        os.chown(self.munge_dir, munge.pw_uid, munge.pw_gid)
        self.munge_dir.chmod(0o711)
        # A private copy of the key, owned by munge and readable only by it (munged checks this).
        key = self.munge_dir / "munge.key"
        shutil.copyfile(DEFAULT_MUNGE_KEY, key)
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        self._daemon(
            "munged",
            [
                which("runuser"),
                "-u",
                "munge",
                "--",
                which("munged"),
                "--foreground",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.pid_files['munged']}",
                f"--log-file={self.log_files['munged']}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
            ],
        )
        self._wait_for(lambda: self.munge_socket.exists(), "the munge socket")

    def _write_conf(self) -> None:
        self.ports = (_free_port(), _free_port())
        while self.ports[1] == self.ports[0]:
            self.ports = (self.ports[0], _free_port())
        b = self.base
        lines = [
            "# Written by tests/slurm_cluster.py: a throwaway single-node cluster.",
            "ClusterName=labnote-test",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={self.ports[0]}",
            f"SlurmdPort={self.ports[1]}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",  # our munged, not the system one at /run/munge
            f"StateSaveLocation={b / 'state'}",
            f"SlurmdSpoolDir={b / 'spool'}",
            f"SlurmctldPidFile={self.pid_files['slurmctld']}",
            f"SlurmdPidFile={self.pid_files['slurmd']}",
            f"SlurmctldLogFile={self.log_files['slurmctld']}",
            f"SlurmdLogFile={self.log_files['slurmd']}",
            "MailProg=/bin/true",
            # No cgroups: plain process tracking, no task binding, no accounting (there is no slurmdbd).
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",  # jobs share the node core by core
            "ReturnToService=2",  # the node becomes usable as soon as slurmd registers
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={_cpus()} RealMemory={_real_memory_mb()} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_slurmctld(self) -> None:
        self._daemon("slurmctld", [which("slurmctld"), "-D", "-f", str(self.conf)])

    def _start_slurmd(self) -> None:
        self._daemon("slurmd", [which("slurmd"), "-D", "-f", str(self.conf), "-N", "localhost"])

    def _daemon(self, name: str, argv: list[str | None]) -> None:
        """Start a daemon in the foreground as our child and record the PID from its pid file.

        Foreground (-D/-F) rather than self-daemonising: we can then reap it, which matters where PID 1 is
        not a real init and never reaps orphans (they would linger as zombies). Its own session, so a
        Ctrl-C in the terminal reaches pytest (whose teardown stops it) rather than the daemon directly.
        """
        pid_file = self.pid_files[name]
        pid_file.unlink(missing_ok=True)
        out_path = self.base / f"{name}.out"
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        self._wait_for(lambda: self._read_pid(name) is not None or proc.poll() is not None, f"{name}'s pid file")
        pid = self._read_pid(name)
        if pid is not None:
            self.pids[name] = pid
        if proc.poll() is not None or pid is None:
            raise SlurmError(
                f"{name} exited during startup (status {proc.returncode}):\n"
                f"{_tail(out_path)}\n{_tail(self.log_files[name])}"
            )

    def _read_pid(self, name: str) -> int | None:
        try:
            text = self.pid_files[name].read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _wait_for(self, condition, what: str, timeout: float | None = None, poll: float = 0.05) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while not condition():
            if time.monotonic() > deadline:
                raise SlurmError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(poll)

    def _wait_node_idle(self) -> None:
        for name in ("slurmctld", "slurmd"):
            if not process_alive(self.pids[name]):
                raise SlurmError(f"{name} exited right after starting\n{self.logs()}")
        self._wait_for(lambda: self.node_state() == "idle", "node localhost to become idle", poll=0.1)

    def _cancel_all_jobs(self, timeout: float) -> None:
        """Cancel what is still queued or running so no job step outlives slurmd."""
        try:
            ids = self.run("squeue", "-h", "-o", "%A", check=False, timeout=10).stdout.split()
            if not ids:
                return
            self.run("scancel", *ids, check=False, timeout=10)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.run("squeue", "-h", "-o", "%A", check=False, timeout=10).stdout.split():
                    return
                time.sleep(0.1)
        except (subprocess.SubprocessError, OSError):
            pass  # stopping the daemons matters more

    def _terminate(self, name: str, pid: int, timeout: float) -> None:
        if not process_alive(pid):
            return
        if _process_name(pid) != name[:15]:
            return  # the PID now belongs to something else: not ours to kill
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not process_alive(pid):
                    return
                time.sleep(0.05)
        raise SlurmError(f"{name} (pid {pid}) survived SIGKILL")


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    """A started LocalSlurm shared by the tests of one module; skips (or fails, in CI) without Slurm."""
    require_slurm()
    # Not pytest's tmp_path: its parent is 0700 and munged runs as the munge user.
    base = Path(tempfile.mkdtemp(prefix="labnote-slurm-"))
    try:
        with LocalSlurm(base) as cluster:
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)
