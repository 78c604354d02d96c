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

import numpy as np
import torch

from pipeline.rundir import RunDir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        from pipeline.errors import ConfigError

        raise ConfigError("train.device: 'cuda' requested but no CUDA device is visible")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


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

    @classmethod
    def create(cls, requested: str) -> Runtime:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(pick_device(requested))
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = pick_device(requested)
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(device, dist.get_rank(), world, local)

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
