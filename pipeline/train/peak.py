"""Peak matmul FLOP/s of a device: measured once, and the vendor's datasheet figure.

MFU against the datasheet peak says how far training is from what the chip could do on paper; MFU against
the measured peak (the best rate one large GEMM sustains on this very device, clocks and power cap included)
says how much of the achievable rate the training loop uses. Reports give both.

>>> datasheet_peak("NVIDIA H100 80GB HBM3")
989400000000000.0
>>> datasheet_peak("cpu") is None
True
>>> TRAINING_DTYPES["bf16"], TRAINING_DTYPES["fp32"]
(torch.bfloat16, torch.float32)
"""

from __future__ import annotations

import logging
import os
import platform
import re
import time

import torch

log = logging.getLogger(__name__)

# Dense (no 2:4 sparsity) BF16 tensor-core FLOP/s from NVIDIA's product datasheets; the datasheets print the
# sparse figure with an asterisk, the dense one is half of it. First match wins, so variants come before the
# plain name (a bare "H100" is the SXM part: its CUDA name is "NVIDIA H100 80GB HBM3").
DATASHEET: list[tuple[str, float]] = [
    (r"H100.*\bNVL\b", 835e12),  # H100 NVL datasheet: BF16 1,671 TFLOPS with sparsity
    (r"H100.*\bPCIe\b", 756e12),  # H100 PCIe datasheet: BF16 1,513 TFLOPS with sparsity
    (r"H100", 989.4e12),  # H100 SXM datasheet: BF16 1,979 TFLOPS with sparsity
    (r"H200.*\bNVL\b", 835e12),  # H200 NVL datasheet: BF16 1,671 TFLOPS with sparsity
    (r"H200", 989.4e12),  # H200 SXM datasheet: BF16 1,979 TFLOPS with sparsity
    (r"GH200", 989.4e12),  # GH200 Grace Hopper datasheet: BF16 1,979 TFLOPS with sparsity
    (r"A100", 312e12),  # A100 datasheet (40/80 GB, SXM and PCIe): BF16 312 TFLOPS dense
    (r"A30", 165e12),  # A30 datasheet: BF16 165 TFLOPS dense
    (r"A10", 125e12),  # A10 datasheet: BF16 125 TFLOPS dense (the cloud-only A10G is not listed)
    (r"L40S", 362.05e12),  # L40S datasheet: BF16 362.05 TFLOPS dense
    (r"L40", 181.05e12),  # L40 datasheet: BF16 181.05 TFLOPS dense
    (r"L4", 121e12),  # L4 datasheet: BF16 242 TFLOPS with sparsity
]


# The probe runs in the dtype training multiplies in (autocast's dtype; fp32 without autocast).
TRAINING_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def datasheet_peak(gpu_name: str | None) -> float | None:
    """Dense BF16 FLOP/s for a CUDA device name (torch.cuda.get_device_name); None if not in the table or CPU."""
    if not gpu_name:
        return None
    for pattern, flops in DATASHEET:
        # Whole-word model numbers: "A10" must not match "A100" or "A10G", nor "H200" match "GH200".
        if re.search(rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])", gpu_name, flags=re.IGNORECASE):
            return flops
    return None


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (what a results table should say it ran on)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used (/proc/stat), or None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


class HostLoad:
    """The share of the machine's cores that *other* processes kept busy while a block ran: a loaded host
    slows the probe, and a slow probe inflates every MFU computed against it."""

    def __enter__(self) -> HostLoad:
        self.busy, self.own, self.wall = _busy_seconds(), _own_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        busy, wall = _busy_seconds(), time.perf_counter() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            self.others = None
            return
        others = (busy - self.busy) - (_own_seconds() - self.own)
        self.others = max(0.0, others / (wall * (os.cpu_count() or 1)))


def _time_matmuls(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, repeats: int) -> float:
    """Seconds for `repeats` products; CUDA events time the GPU itself, not the CPU's kernel launches."""
    if a.device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b, out=out)
    return time.perf_counter() - t0


def measure_matmul_peak(
    device: torch.device | str,
    dtype: torch.dtype | None = None,
    seconds: float | None = None,
    n: int | None = None,
    windows: int = 5,
) -> dict:
    """The best FLOP/s of square n x n matmuls over `windows` timed windows lasting `seconds` in all.

    Defaults: bf16, n = 8192 and 3 s on a GPU; fp32, n = 1024 and 1 s on a CPU (most CPUs emulate bf16, so
    its rate would understate what fp32 training gets). Untimed products first pay the first-call costs, bring
    clocks up and pick the number of products per window. The best window, not the mean, is the peak: a
    neighbour's load or a clock dip can only slow a window down.
    """
    device = torch.device(device)
    gpu = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if gpu else torch.float32)
    seconds = seconds if seconds is not None else (3.0 if gpu else 1.0)
    n = n or (8192 if gpu else 1024)
    gen = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    _time_matmuls(a, b, out, 3)  # library handles, kernel choice: first-call costs, not the rate
    repeats, elapsed = 1, _time_matmuls(a, b, out, 1)
    while elapsed < 0.25 * seconds / windows and repeats < 2**20:  # warm-up doubles as calibration
        repeats *= 2
        elapsed = _time_matmuls(a, b, out, repeats)
    repeats = max(1, round(repeats * seconds / windows / max(elapsed, 1e-9)))
    with HostLoad() as load:
        times = [_time_matmuls(a, b, out, repeats) for _ in range(windows)]
    flops = 2 * n**3 * repeats / min(times)
    result = {
        "flops_per_s": flops,
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "name": device_name(device),
        "n": n,
        "repeats": repeats,
        "windows": windows,
        "seconds": sum(times),
        # How far the windows disagree (slowest over fastest rate, minus 1): a busy or throttling device.
        "window_spread": max(times) / min(times) - 1,
        # Share of the host's cores other processes used during the probe (None where /proc/stat is missing).
        "host_load_others": load.others,
        "cpu_count": os.cpu_count(),
    }
    log.info("matmul peak on %s (%s, n=%d): %.1f TFLOP/s", result["name"], result["dtype"], n, flops / 1e12)
    return result
