"""Deterministic, resumable batches over a packed token stream.

The order of sequences in epoch `e` is a permutation drawn from `seed + e`, so the data position is just
(step) and a resumed run sees exactly the batches an uninterrupted one would.

>>> as_sequences(np.arange(10), seq_len=4)  # the 2-token tail does not fill a row and is dropped
array([[0, 1, 2, 3],
       [4, 5, 6, 7]])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def as_sequences(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """Cut the stream into non-overlapping rows of `seq_len` tokens (the tail that does not fill one is dropped)."""
    n = len(tokens) // seq_len
    return np.asarray(tokens[: n * seq_len]).reshape(n, seq_len)


@dataclass
class BatchPlan:
    n_sequences: int
    micro_batch: int
    grad_accum: int
    world_size: int = 1
    rank: int = 0
    # The epoch's order, drawn once per epoch (not per step: at 4.9M sequences a permutation costs ~0.1 s).
    _order: tuple[int, int, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def sequences_per_step(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.n_sequences // self.sequences_per_step

    def indices(self, seed: int, step: int) -> list[np.ndarray]:
        """Row indices of this rank's micro-batches for optimizer step `step` (0-based)."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(seed, epoch)
        start = within * self.sequences_per_step
        chunk = order[start : start + self.sequences_per_step]
        per_rank = chunk.reshape(self.world_size, self.grad_accum, self.micro_batch)
        return list(per_rank[self.rank])

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """The permutation of all sequences for `epoch`, from `seed + epoch` alone (so resume reproduces it)."""
        if self._order is None or self._order[:2] != (seed, epoch):
            self._order = (seed, epoch, np.random.default_rng(seed + epoch).permutation(self.n_sequences))
        return self._order[2]


class DeviceBatches:
    """Yields each step's micro-batches on the device, preparing the next step's while the current runs."""

    def __init__(self, sequences: np.ndarray, plan: BatchPlan, seed: int, device: torch.device):
        self.sequences, self.plan, self.seed, self.device = sequences, plan, seed, device
        self.pin = device.type == "cuda"

    def _load(self, step: int) -> list[torch.Tensor]:
        out = []
        for rows in self.plan.indices(self.seed, step):
            batch = torch.from_numpy(self.sequences[np.sort(rows)].astype(np.int64))
            if self.pin:
                batch = batch.pin_memory()
            out.append(batch.to(self.device, non_blocking=self.pin))
        return out

    def steps(self, start: int, stop: int):
        nxt = self._load(start) if start < stop else None
        for step in range(start, stop):
            current, nxt = nxt, (self._load(step + 1) if step + 1 < stop else None)
            yield step, current
