"""Device truth: what the machine shows vs what torch can use, build vs driver, NVML by UUID, NCCL's transport.

This machine has no GPU and no NVIDIA driver, so the CPU answers are real (torch's CPU build, a real
`train` command stopping), and only what cannot exist here is faked, each time saying so: a driver's answer
to torch (`torch.cuda.is_available` / `torch.cuda.init`), an NVML module, and /dev device nodes (an empty
file named nvidia0 in a temporary /dev).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import pipeline_cmd, pipeline_env

from pipeline import gpu
from pipeline.errors import ConfigError
from pipeline.train import nccl
from pipeline.train.runtime import device_choice, pick_device

TOO_OLD = (
    "The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver by\n"
    "downloading and installing a new version from the URL: http://www.nvidia.com/Download/index.aspx\n"
    "Alternatively, go to: https://pytorch.org to install a PyTorch version that has been compiled with your\n"
    "version of the CUDA driver."
)


# --------------------------------------------------------------------------- what the machine shows
def test_nvidia_visible_from_device_nodes_smi_or_cuda_visible_devices(tmp_path: Path):
    dev = tmp_path / "dev"
    dev.mkdir()
    none = gpu.nvidia_visible({}, dev, which=lambda _: None)
    assert none["visible"] is False
    (dev / "nvidia0").touch()  # a stand-in device node: no GPU here to make a real one
    (dev / "nvidiactl").touch()
    seen = gpu.nvidia_visible({}, dev, which=lambda _: None)
    assert seen["visible"] and seen["dev_nodes"] == ["nvidia0"]
    assert gpu.nvidia_visible({"CUDA_VISIBLE_DEVICES": "0,1"}, tmp_path / "nodev", which=lambda _: None)["visible"]
    assert gpu.nvidia_visible({}, tmp_path / "nodev", which=lambda _: "/usr/bin/nvidia-smi")["visible"]
    for hidden in ("", "-1"):  # the user hid every GPU: not a request for one
        assert gpu.nvidia_visible({"CUDA_VISIBLE_DEVICES": hidden}, dev, which=lambda _: None)["visible"] is False


def test_cpu_build_says_so_and_cpu_needs_no_gpu_library(monkeypatch):
    if torch.version.cuda is not None:
        pytest.skip("a CUDA build of torch: this checks the CPU build's answer")
    status = gpu.cuda_status()
    assert status["usable"] is False and "CPU-only build" in status["reason"]
    monkeypatch.setitem(sys.modules, "pynvml", None)  # any import of pynvml would now fail
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == "cpu"
    info = gpu.describe()
    assert info["cuda_usable"] is False and info["gpus"] == []


def test_cuda_requested_on_this_machine_is_one_line_with_torchs_reason():
    with pytest.raises(ConfigError) as exc:
        pick_device("cuda")
    text = str(exc.value)
    assert "\n" not in text and text.startswith("train.device: 'cuda' requested but torch cannot use CUDA: ")


def test_driver_too_old_reason_comes_from_torch_on_one_line(monkeypatch):
    # Faked: a CUDA build of torch on a machine whose driver is too old cannot exist here.
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def init():
        raise RuntimeError(TOO_OLD)

    monkeypatch.setattr(torch.cuda, "init", init)
    seen = {"visible": True, "dev_nodes": ["nvidia0"], "nvidia_smi": True, "cuda_visible_devices": "0"}
    monkeypatch.setattr(gpu, "nvidia_visible", lambda *a, **k: seen)
    monkeypatch.setattr(gpu, "driver_info", lambda *a: {"driver": "470.82", "driver_cuda": "11.4"})
    with pytest.raises(ConfigError) as exc:
        pick_device("cuda")
    text = str(exc.value)
    assert "\n" not in text
    assert "The NVIDIA driver on your system is too old (found version 11040)" in text
    assert "/dev/nvidia0, nvidia-smi on PATH, CUDA_VISIBLE_DEVICES=0" in text
    assert "the driver supports CUDA up to 11.4 but this torch was built for CUDA 12.6" in text
    choice = device_choice("auto", pick_device("auto"), 1)  # auto falls back to the CPU and records why
    assert choice["used"] == "cpu" and choice["nvidia_visible"] and "too old" in choice["cuda_unusable_reason"]


@pytest.mark.slow  # several seconds: kept out of make test-fast
def test_train_with_cuda_on_a_cpu_machine_stops_before_any_work(tiny_project: Path):
    """The real command: exit 2, one error line, and nothing of the train stage written."""
    env = pipeline_env()
    resolve = subprocess.run(pipeline_cmd("resolve", "tiny", "--set", "train.device=cuda"), cwd=tiny_project,
                             env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resolve.returncode == 0, resolve.stderr[-2000:]
    proc = subprocess.run(pipeline_cmd("train", "runs/tiny"), cwd=tiny_project, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.device: 'cuda' requested but torch cannot use CUDA" in errors[0]
    assert "Traceback" not in proc.stderr
    run = tiny_project / "runs" / "tiny"
    assert not (run / "train").exists() and not (run / "checkpoints").exists()


# --------------------------------------------------------------------------- build vs driver vs GPU
def test_compatibility_of_build_driver_and_architectures():
    h100 = [{"name": "NVIDIA H100 80GB HBM3", "arch": "sm_90"}]
    cu126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
    assert gpu.compatibility("12.6", "12.8", h100, cu126, True) == ([], [])
    errors, _ = gpu.compatibility("12.6", "11.8", h100, cu126, False)
    assert errors == ["the driver supports CUDA up to 11.8 but this torch was built for CUDA 12.6: update the "
                      "driver, or install a torch built for CUDA 11.8 or older"]  # fmt: skip
    errors, notes = gpu.compatibility("12.6", "12.4", h100, cu126, True)  # minor-version compatibility runs it
    assert errors == [] and "CUDA up to 12.4" in notes[0]
    errors, _ = gpu.compatibility("12.6", "12.8", h100, ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80"], True)
    assert errors and errors[0].startswith("GPU 0 (NVIDIA H100 80GB HBM3) is sm_90 but this torch has code only")
    blackwell = [{"name": "NVIDIA B200", "arch": "sm_100"}]
    assert gpu.compatibility("12.8", "12.8", blackwell, ["sm_90", "sm_100"], True) == ([], [])
    assert gpu.compatibility("12.6", "12.8", blackwell, cu126, True)[0]
    assert gpu.arch_supported("sm_90", ["sm_90a"]) and not gpu.arch_supported("sm_89", ["sm_90a"])


def test_nvidia_smi_header_and_nvml_versions():
    header = "| NVIDIA-SMI 580.159.03             Driver Version: 580.159.03     CUDA Version: 13.0     |"
    assert gpu.parse_nvidia_smi(header) == {"driver": "580.159.03", "driver_cuda": "13.0"}
    assert gpu.cuda_version(13000) == "13.0" and gpu.cuda_version(12060) == "12.6"


# --------------------------------------------------------------------------- NVML by UUID
class FakeNvml:
    """Faked: there is no NVIDIA driver here for the real pynvml to talk to. It numbers all four GPUs of a node
    as NVML does; the process sees two of them (CUDA_VISIBLE_DEVICES=2,3), so CUDA's device 0 is NVML's 2."""

    UUIDS = [f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd" for i in range(4)]

    class Proc:
        def __init__(self, pid, used):
            self.pid, self.usedGpuMemory = pid, used

    def nvmlDeviceGetCount(self):
        return 4

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetUUID(self, handle):
        return self.UUIDS[handle[1]].encode()  # older bindings return bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return 1000 * (handle[1] + 1)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [self.Proc(4242, 2 * 2**30)] if handle[1] == 2 else []


def test_nvml_device_is_matched_by_uuid_not_by_cuda_index():
    nv = FakeNvml()
    torch_uuid = "00000002-aaaa-bbbb-cccc-dddddddddddd"  # torch prints it bare, without "GPU-"
    handle = gpu.nvml_handle(nv, torch_uuid)
    assert handle == ("handle", 2)  # by index, CUDA's 0 would have read NVML's 0: another board
    assert gpu.energy_mj(nv, handle) == 3000
    assert gpu.process_memory_gib(nv, handle, pid=4242) == 2.0
    assert gpu.process_memory_gib(nv, gpu.nvml_handle(nv, "00000000-aaaa-bbbb-cccc-dddddddddddd"), pid=4242) is None
    assert gpu.nvml_handle(nv, "ffffffff-0000-0000-0000-000000000000") is None
    assert gpu.nvml_handle(None, torch_uuid) is None and gpu.nvml_handle(nv, None) is None


# --------------------------------------------------------------------------- NCCL's transport
# NCCL 2.21's INFO lines (host:pid:tid [cudaDev] NCCL INFO ...), rank 0 of 2 nodes x 4 GPUs.
IB_LOG = """\
gpu01:81724:81724 [0] NCCL INFO Bootstrap : Using ib0:10.10.0.1<0>
gpu01:81724:81724 [0] NCCL INFO NET/Plugin: No plugin found (libnccl-net.so)
gpu01:81724:81724 [0] NCCL INFO cudaDriverVersion 12040
NCCL version 2.21.5+cuda12.4
gpu01:81724:81724 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
gpu01:81724:81790 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB ib0:10.10.0.1<0>
gpu01:81724:81790 [0] NCCL INFO Using non-device net plugin version 0
gpu01:81724:81790 [0] NCCL INFO Using network IB
gpu01:81724:81790 [0] NCCL INFO comm 0x5581 rank 0 nranks 8 cudaDev 0 nvmlDev 0 busId 18000 commId 0x9a - Init START
gpu01:81724:81790 [0] NCCL INFO Channel 00/02 :    0   1   2   3   4   5   6   7
gpu01:81724:81790 [0] NCCL INFO Channel 00/0 : 7[3] -> 0[0] [receive] via NET/IB/0/GDRDMA
gpu01:81724:81790 [0] NCCL INFO Channel 01/0 : 7[3] -> 0[0] [receive] via NET/IB/1/GDRDMA
gpu01:81724:81790 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
gpu01:81724:81790 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[1] via P2P/CUMEM/read
gpu01:81724:81790 [0] NCCL INFO Connected all rings
"""

SOCKET_LOG = """\
gpu01:5101:5101 [0] NCCL INFO Bootstrap : Using eth0:10.1.2.3<0>
gpu01:5101:5101 [0] NCCL INFO NCCL version 2.21.5+cuda12.4
gpu01:5101:5160 [0] NCCL INFO Failed to open libibverbs.so[.1]
gpu01:5101:5160 [0] NCCL INFO NET/Socket : Using [0]eth0:10.1.2.3<0>
gpu01:5101:5160 [0] NCCL INFO Using network Socket
gpu01:5101:5160 [0] NCCL INFO Channel 00/0 : 7[3] -> 0[0] [receive] via NET/Socket/0
gpu01:5101:5160 [0] NCCL INFO Channel 01/0 : 7[3] -> 0[0] [receive] via NET/Socket/0
gpu01:5101:5160 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via SHM/direct/direct
gpu01:5101:5160 [0] NCCL WARN NET/Socket : message truncated : receiving 1048576 bytes instead of 65536
"""


def test_nccl_log_parser_on_nccls_own_lines(tmp_path: Path):
    ib = nccl.parse_nccl_log(IB_LOG.splitlines())
    assert ib["network"] == "IB" and ib["version"] == "2.21.5+cuda12.4"
    assert ib["channels"] == {"NET/IB": 2, "P2P/CUMEM": 2}
    assert any(x.startswith("NET/IB : Using [0]mlx5_0:1/IB") for x in ib["net_lines"]) and not nccl.uses_sockets(ib)
    path = tmp_path / "nccl.log"
    path.write_text(SOCKET_LOG)
    sock = nccl.read_nccl_log(path)
    assert sock["network"] == "Socket" and sock["channels"] == {"NET/Socket": 2, "SHM": 1}
    assert sock["warnings"] == ["NET/Socket : message truncated : receiving 1048576 bytes instead of 65536"]
    assert nccl.uses_sockets(sock) and sock["log"] == str(path)
    older = nccl.parse_nccl_log([line for line in SOCKET_LOG.splitlines() if "Using network" not in line])
    assert older["network"] == "Socket"  # NCCL before 2.12: only the NET/... : Using line names it
    assert nccl.read_nccl_log(tmp_path / "missing.log") is None


def test_rank0_alone_logs_nccl_into_the_run_directory(tmp_path: Path):
    env: dict[str, str] = {}
    assert nccl.setup_nccl_log(tmp_path, rank=1, env=env) is None and env == {}
    path = nccl.setup_nccl_log(tmp_path, rank=0, env=env)
    assert path == tmp_path / "logs" / "nccl-rank0.log" and path.parent.is_dir()
    assert env == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": str(path)}
    own = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": "/scratch/nccl.%h.%p"}  # the user's own: left alone
    assert nccl.setup_nccl_log(tmp_path, rank=0, env=own) is None and own["NCCL_DEBUG_FILE"] == "/scratch/nccl.%h.%p"
