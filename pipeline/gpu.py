"""The GPU side of a machine, as independent counters see it: whether NVIDIA devices are visible, whether torch
can use them (and the reason it gives when it cannot), the CUDA / cuDNN / NCCL versions and GPU architectures on
both sides of the build-vs-driver line, NVML matched to torch's devices by UUID, and NCCL's own transport log.

Nothing here needs a GPU library: torch is imported inside functions and asked about CUDA only when it is a CUDA
build, `pynvml` (nvidia-ml-py) is imported only where NVIDIA devices are visible, `nvidia-smi` is run only where
it is on PATH. On a CPU machine `describe()` reads `/dev`, PATH and one environment variable.

>>> sm_arch(9, 0), arch_supported("sm_90", ["sm_80", "sm_90"]), arch_supported("sm_86", ["sm_80"])
('sm_90', True, True)
>>> arch_supported("sm_90", ["sm_70", "sm_80"]), arch_supported("sm_90", ["sm_80", "compute_80"])
(False, True)
>>> cuda_version(12040), same_uuid("GPU-6B3A0F2C-1111-2222-3333-444455556666", "6b3a0f2c-1111-2222-3333-444455556666")
('12.4', True)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def one_line(text: str, limit: int = 400) -> str:
    """An error text on one line (torch's CUDA errors span several), cut at `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- what the machine shows
def nvidia_visible(env: dict[str, str] | None = None, dev: Path = Path("/dev"), which=shutil.which) -> dict:
    """Signs of NVIDIA GPUs that do not depend on torch: device nodes, `nvidia-smi` on PATH, and
    `CUDA_VISIBLE_DEVICES` naming devices (a scheduler sets it for the GPUs it allocated; "" or "-1" hides all)."""
    env = os.environ if env is None else env
    try:
        nodes = sorted(p.name for p in dev.glob("nvidia[0-9]*"))
    except OSError:
        nodes = []
    smi = which("nvidia-smi") is not None
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    names_gpus = cvd is not None and cvd.strip() not in ("", "-1", "NoDevFiles")
    hidden = cvd is not None and not names_gpus
    return {
        "visible": not hidden and (bool(nodes) or smi or names_gpus),
        "dev_nodes": nodes,
        "nvidia_smi": smi,
        "cuda_visible_devices": cvd,
    }


def cuda_status() -> dict:
    """Whether torch can use CUDA here; when it cannot, the reason torch gives (a CPU-only build, no driver, a
    driver too old for the build, ...). A CPU-only build is answered without touching any CUDA library."""
    import torch

    out = {"build": torch.version.cuda, "usable": False, "reason": None, "device_count": 0}
    if torch.version.cuda is None:
        out["reason"] = f"this torch ({torch.__version__}) is a CPU-only build"
        return out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        out.update(usable=True, device_count=torch.cuda.device_count())
        return out
    try:  # fails here too; its exception is the reason (e.g. "The NVIDIA driver on your system is too old ...")
        torch.cuda.init()
        out["reason"] = "torch.cuda.is_available() is False"
    except Exception as exc:  # noqa: BLE001 - RuntimeError or AssertionError depending on the cause
        out["reason"] = one_line(exc)
    if caught and out["reason"] == "torch.cuda.is_available() is False":
        out["reason"] = one_line(caught[0].message)
    return out


def sm_arch(major: int, minor: int) -> str:
    return f"sm_{major}{minor}"


def _arch_number(arch: str) -> tuple[str, int, int, str] | None:
    m = re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", arch.strip())
    return (m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)) if m else None


def arch_supported(gpu_arch: str, build_archs: list[str]) -> bool:
    """Whether a build with these targets has code for a GPU: a cubin of the same major architecture and no newer
    minor (sm_80 runs on sm_86), an exact arch-specific one (sm_90a), or PTX no newer than the GPU (JIT)."""
    gpu = _arch_number(gpu_arch)
    if gpu is None:
        return True
    _, g_major, g_minor, _ = gpu
    for arch in build_archs:
        parsed = _arch_number(arch)
        if parsed is None:
            continue
        kind, major, minor, suffix = parsed
        if kind == "sm" and major == g_major and (minor == g_minor if suffix else minor <= g_minor):
            return True
        if kind == "compute" and (major, minor) <= (g_major, g_minor):
            return True
    return False


def cuda_version(number: int | None) -> str | None:
    """CUDA's integer version (1000·major + 10·minor, as NVML and cudaDriverGetVersion give it) as "12.4"."""
    if not number:
        return None
    return f"{number // 1000}.{number % 1000 // 10}"


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def build_arch_list() -> list[str]:
    """The GPU targets the torch build carries. `torch.cuda.get_arch_list()` answers [] when CUDA is unusable,
    so the compile-time flags are read directly where torch exposes them."""
    import torch

    if torch.version.cuda is None:
        return []
    flags = getattr(torch._C, "_cuda_getArchFlags", None)
    try:
        listed = flags() if flags else None
    except Exception:  # noqa: BLE001
        listed = None
    if listed:
        return listed.split()
    try:
        return list(torch.cuda.get_arch_list())
    except Exception:  # noqa: BLE001
        return []


# --------------------------------------------------------------------------- the driver
def nvml():
    """The `pynvml` module (from the nvidia-ml-py package), initialised, or None: no package, no driver, no
    permission. Imported here only, so nothing on the CPU path needs it."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_nvidia_smi(text: str) -> dict:
    """Driver version and the highest CUDA version the driver supports, from nvidia-smi's header.

    >>> parse_nvidia_smi("| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15      CUDA Version: 12.4     |")
    {'driver': '550.54.15', 'driver_cuda': '12.4'}
    """
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return {"driver": driver and driver.group(1), "driver_cuda": cuda and cuda.group(1)}


def driver_info(nv=None) -> dict:
    """The driver's version and highest supported CUDA: NVML where it loads, else nvidia-smi's header."""
    nv = nv or nvml()
    if nv is not None:
        try:
            return {
                "driver": _text(nv.nvmlSystemGetDriverVersion()),
                "driver_cuda": cuda_version(nv.nvmlSystemGetCudaDriverVersion()),
                "driver_source": "nvml",
            }
        except Exception:  # noqa: BLE001
            pass
    if shutil.which("nvidia-smi"):
        try:
            text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        parsed = parse_nvidia_smi(text)
        if parsed["driver"] or parsed["driver_cuda"]:
            return {**parsed, "driver_source": "nvidia-smi"}
    return {"driver": None, "driver_cuda": None, "driver_source": None}


# --------------------------------------------------------------------------- compatibility
def compatibility(build_cuda: str | None, driver_cuda: str | None, gpus: list[dict], build_archs: list[str],
                  usable: bool) -> tuple[list[str], list[str]]:  # fmt: skip
    """(errors, notes) for a torch build on this driver and these GPUs.

    A driver whose CUDA is older than the build's: an error when the major version differs, or when torch cannot
    use CUDA; the same major with an older minor on a working setup is a note (CUDA's minor-version compatibility
    runs such builds, but PTX JIT and the newest APIs fail). A GPU architecture the build has no code for: an error.
    """
    errors, notes = [], []
    build, driver = _version_tuple(build_cuda), _version_tuple(driver_cuda)
    if build and driver and driver < build:
        text = (
            f"the driver supports CUDA up to {driver_cuda} but this torch was built for CUDA {build_cuda}: "
            f"update the driver, or install a torch built for CUDA {driver_cuda} or older"
        )
        (errors if driver[0] < build[0] or not usable else notes).append(text)
    for i, g in enumerate(gpus):
        arch = g.get("arch")
        if arch and build_archs and not arch_supported(arch, build_archs):
            errors.append(
                f"GPU {i} ({g.get('name')}) is {arch} but this torch has code only for {' '.join(build_archs)} "
                f"(torch.cuda.get_arch_list()): install a torch build that includes {arch}"
            )
    return errors, notes


def same_uuid(a, b) -> bool:
    """torch prints a device UUID bare, NVML as GPU-<uuid> (MIG-<uuid> for a MIG slice); both name one device."""

    def norm(u) -> str:
        return re.sub(r"^(GPU|MIG)-", "", _text(u).strip(), flags=re.I).lower()

    return bool(_text(a).strip()) and norm(a) == norm(b)


def torch_uuid(index: int) -> str | None:
    import torch

    try:
        return str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # noqa: BLE001 - older torch has no uuid property
        return None


def nvml_handle(nv, uuid: str | None):
    """The NVML handle of the device whose UUID is `uuid`. NVML numbers every GPU of the node, CUDA only the
    visible ones (CUDA_VISIBLE_DEVICES=2,3 makes NVML's 2 CUDA's 0), so indices are never compared."""
    if nv is None or not uuid:
        return None
    try:
        count = nv.nvmlDeviceGetCount()
    except Exception:  # noqa: BLE001
        return None
    for i in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            if same_uuid(uuid, nv.nvmlDeviceGetUUID(handle)):
                return handle
        except Exception:  # noqa: BLE001
            continue
    return None


def energy_mj(nv, handle) -> int | None:
    """The board's energy counter since the driver loaded (millijoules), or None where it is not supported."""
    try:
        return int(nv.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001
        return None


def process_memory_gib(nv, handle, pid: int | None = None) -> float | None:
    """GPU memory NVML attributes to this process (None where NVML cannot see processes, e.g. in a container)."""
    pid = os.getpid() if pid is None else pid
    try:
        for proc in nv.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return proc.usedGpuMemory / 2**30
    except Exception:  # noqa: BLE001
        pass
    return None


# --------------------------------------------------------------------------- all of it
def describe() -> dict:
    """Everything above, for provenance's `device` block."""
    import torch

    visible = nvidia_visible()
    status = cuda_status()
    out = {
        "nvidia_visible": visible["visible"],
        "nvidia": visible,
        "cuda": status["build"],
        "cuda_usable": status["usable"],
        "cuda_unusable_reason": status["reason"],
        "arch_list": build_arch_list(),
        "gpus": [],
    }
    nv = nvml() if visible["visible"] or status["usable"] else None
    if visible["visible"] or status["usable"]:
        out.update(driver_info(nv))
    if status["usable"]:
        for i in range(status["device_count"]):
            props = torch.cuda.get_device_properties(i)
            uuid = torch_uuid(i)
            gpu = {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 2),
                "capability": f"{props.major}.{props.minor}",
                "arch": sm_arch(props.major, props.minor),
                "uuid": uuid,
            }
            handle = nvml_handle(nv, uuid)
            if handle is not None:
                gpu["nvml_matched"] = True
            out["gpus"].append(gpu)
        try:
            out["cudnn"] = torch.backends.cudnn.version()
        except Exception:  # noqa: BLE001
            out["cudnn"] = None
        try:
            out["nccl"] = ".".join(str(x) for x in torch.cuda.nccl.version())
        except Exception:  # noqa: BLE001
            out["nccl"] = None
    errors, notes = compatibility(out["cuda"], out.get("driver_cuda"), out["gpus"], out["arch_list"], status["usable"])
    out["compat_errors"], out["compat_notes"] = errors, notes
    return out


def require_cuda() -> None:
    """Stop with one line when training on CUDA is asked for and cannot work here: torch cannot use CUDA (with
    torch's reason and what the machine shows), or the build does not fit the driver or the GPUs."""
    from pipeline.errors import ConfigError

    status = cuda_status()
    visible = nvidia_visible()
    if not status["usable"]:
        seen = (
            "NVIDIA devices are visible (" + seen_summary(visible) + ")"
            if visible["visible"]
            else "no NVIDIA device is visible"
        )
        extra = ""
        if visible["visible"] and status["build"]:
            errors, _ = compatibility(status["build"], driver_info().get("driver_cuda"), [], [], False)
            extra = f"; {errors[0]}" if errors else ""
        raise ConfigError(
            f"train.device: 'cuda' requested but torch cannot use CUDA: {status['reason']}; {seen}{extra}"
        )
    info = describe()
    if info["compat_errors"]:
        raise ConfigError(f"train.device: 'cuda': {info['compat_errors'][0]}")
    for note in info["compat_notes"]:
        log.warning("%s (running on CUDA's minor-version compatibility)", note)


def seen_summary(visible: dict) -> str:
    """What made NVIDIA devices count as visible, for messages."""
    parts = []
    if visible["dev_nodes"]:
        parts.append("/dev/" + ", /dev/".join(visible["dev_nodes"][:4]))
    if visible["nvidia_smi"]:
        parts.append("nvidia-smi on PATH")
    if visible["cuda_visible_devices"] not in (None, ""):
        parts.append(f"CUDA_VISIBLE_DEVICES={visible['cuda_visible_devices']}")
    return ", ".join(parts)
