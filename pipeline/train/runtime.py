"""Where training runs: device choice, seeding, process group (torchrun sets RANK/WORLD_SIZE), memory."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from pipeline.rundir import RunDir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str) -> torch.device:
    """`cpu` never asks torch about CUDA. `cuda` stops with one line when it cannot work here (torch's reason,
    what the machine shows, a driver or GPU architecture the build does not fit). `auto` takes CUDA when torch
    can use it, else the CPU, with a warning when NVIDIA devices are visible (the `device_fallback` check)."""
    if requested == "cpu":
        return torch.device("cpu")
    from pipeline import gpu

    if requested == "cuda":
        gpu.require_cuda()
        return torch.device("cuda")
    status = gpu.cuda_status()
    if status["usable"]:
        return torch.device("cuda")
    visible = gpu.nvidia_visible()
    if visible["visible"]:
        logging.getLogger("pipeline.train").warning(
            "train.device: auto: NVIDIA devices are visible (%s) but torch cannot use them (%s); running on CPU",
            gpu.seen_summary(visible),
            status["reason"],
        )
    return torch.device("cpu")


def device_choice(requested: str, device: torch.device, world_size: int) -> dict:
    """What was asked for and what training got, with what the machine showed: the `device_fallback` check's
    evidence (provenance `train_device`)."""
    from pipeline import gpu

    visible = gpu.nvidia_visible()
    status = gpu.cuda_status() if requested != "cpu" or visible["visible"] else None
    return {
        "requested": requested,
        "used": str(device),
        "world_size": world_size,
        "nvidia_visible": visible["visible"],
        "nvidia": visible,
        "cuda_build": torch.version.cuda,
        "cuda_usable": status["usable"] if status else None,
        "cuda_unusable_reason": status["reason"] if status else None,
    }


def peak_memory_gib(device: torch.device) -> float:
    """Peak tensor memory on a GPU; on CPU the process's peak resident set size (both in GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib * (1 if sys.platform != "darwin" else 1 / 1024) / 2**20


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    nccl_log: Path | None = None

    @classmethod
    def create(cls, requested: str, run_root: Path | None = None) -> Runtime:
        """The device (checked before any work) and, under torchrun, the process group. With NCCL, rank 0 logs
        NCCL's choices into `run_root`/logs/nccl-rank0.log (pipeline/train/nccl.py) for provenance."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(pick_device(requested))
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = pick_device(requested)
        nccl_log = None
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
            if run_root is not None:
                from pipeline.train.nccl import setup_nccl_log

                nccl_log = setup_nccl_log(run_root, int(os.environ.get("RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(device, dist.get_rank(), world, local, nccl_log)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    @contextlib.contextmanager
    def no_sync(self, model, last: bool):
        """Skip DDP's gradient all-reduce on all but the last micro-batch of an accumulation."""
        if self.world_size > 1 and not last:
            with model.no_sync():
                yield
        else:
            yield

    def mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a per-rank scalar over all processes (only at log steps: it synchronises)."""
        if self.world_size == 1:
            return value
        import torch.distributed as dist

        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def archive_stale_outputs(run: RunDir, train_hash: str) -> None:
    """Move outputs made from other train inputs to archive/<UTC time>/ rather than resuming or deleting them."""
    from pipeline.train.checkpoint import load_train_state, newest_intact

    latest = newest_intact(run, logging.getLogger("pipeline.train"))
    stale = False
    if latest is not None:
        stale = load_train_state(latest).get("train_hash") != train_hash
    elif run.train.exists() and not run.checkpoints.exists():
        stale = True  # logs without any checkpoint cannot be resumed
    if run.train_done.is_file() and latest is None:
        stale = True
    if not stale:
        return
    dest = run.archive / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest.mkdir(parents=True, exist_ok=True)
    for path in (run.train, run.checkpoints, run.eval):
        if path.exists():
            shutil.move(str(path), dest / path.name)
