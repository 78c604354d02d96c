"""Which transport NCCL chose, from NCCL's own log (`NCCL_DEBUG=INFO`), not from what the job asked for.

A multi-process CUDA run has rank 0 write NCCL's log to `logs/nccl-rank0.log` (`NCCL_DEBUG=INFO`,
`NCCL_DEBUG_FILE`; left alone when the user set `NCCL_DEBUG_FILE`). NCCL prints, per process:

    node01:4242:4242 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB ib0:10.0.0.1<0>
    node01:4242:4242 [0] NCCL INFO Using network IB
    node01:4242:4290 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/IB/0
    node01:4242:4290 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read

and on a node without working InfiniBand `NET/IB : No device found.`, `NET/Socket : Using [0]eth0:10.1.2.3<0>`,
`Using network Socket` and channels `via NET/Socket/0`: inter-node traffic over TCP, often 10x slower.

>>> summary = parse_nccl_log(EXAMPLE.splitlines())
>>> summary["network"], summary["channels"], summary["version"]
('IB', {'NET/IB': 1, 'P2P/CUMEM': 1}, '2.21.5+cuda12.4')
>>> uses_sockets(summary)
False
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

EXAMPLE = """\
node01:4242:4242 [0] NCCL INFO Bootstrap : Using ib0:10.0.0.1<0>
node01:4242:4242 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
node01:4242:4290 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB ib0:10.0.0.1<0>
node01:4242:4290 [0] NCCL INFO Using network IB
node01:4242:4290 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/IB/0
node01:4242:4290 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
"""

LINE = re.compile(
    r"^(?P<host>[^:\s]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>[^\]]*)\] NCCL (?P<level>INFO|WARN) (?P<msg>.*)$"
)
LOG_PATH = "logs/nccl-rank0.log"


def setup_nccl_log(run_root: Path, rank: int, env: dict | None = None) -> Path | None:
    """Before the process group starts: rank 0 logs NCCL's choices into the run directory. Returns the log's
    path, or the user's own NCCL_DEBUG_FILE when it is a plain path, or None for other ranks."""
    env = os.environ if env is None else env
    if rank != 0:
        return None
    if env.get("NCCL_DEBUG_FILE"):
        own = env["NCCL_DEBUG_FILE"]
        return None if "%" in own else Path(own)
    path = Path(run_root) / LOG_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    if env.get("NCCL_DEBUG", "").upper() not in ("INFO", "TRACE"):
        env["NCCL_DEBUG"] = "INFO"
    env["NCCL_DEBUG_FILE"] = str(path)
    return path


def parse_nccl_log(lines) -> dict:
    """The network NCCL picked, the transport of each channel it built, its version, and its warnings."""
    network, net_lines, warns, version = None, [], [], None
    channels: Counter[str] = Counter()
    for raw in lines:
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        msg = m.group("msg").strip()
        if m.group("level") == "WARN":
            warns.append(msg)
            continue
        if v := re.match(r"NCCL version (\S+)", msg):
            version = v.group(1)
        elif n := re.match(r"Using network (.+)$", msg):
            network = n.group(1).strip()
        elif re.match(r"NET/\S+ ?: ", msg):
            net_lines.append(msg)
        elif c := re.search(r"\bvia (\S+)", msg):
            # NET/IB/0, NET/Socket/1, P2P/IPC, P2P/CUMEM/read, SHM/direct/direct -> the transport's first two parts
            parts = c.group(1).split("/")
            channels["/".join(parts[:2]) if parts[0] in ("NET", "P2P") else parts[0]] += 1
    if network is None:  # older NCCL: no "Using network" line; the last NET/... : Using line tells
        for line in reversed(net_lines):
            if u := re.match(r"NET/(\S+) ?: Using", line):
                network = u.group(1)
                break
    return {
        "network": network,
        "channels": dict(sorted(channels.items())),
        "version": version,
        "net_lines": net_lines[:10],
        "warnings": warns[:10],
    }


def read_nccl_log(path: Path | None) -> dict | None:
    """`parse_nccl_log` of a file, or None when there is none (NCCL never initialised, or logged elsewhere)."""
    if path is None or not Path(path).is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        summary = parse_nccl_log(f)
    summary["log"] = str(path)
    return summary


def uses_sockets(summary: dict | None) -> bool:
    """Whether NCCL moved data between nodes over TCP sockets."""
    if not summary:
        return False
    return (summary.get("network") or "").lower() == "socket" or "NET/Socket" in (summary.get("channels") or {})
