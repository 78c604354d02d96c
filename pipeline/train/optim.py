"""AdamW (decay on matrices only; fused kernels on GPU) and linear-warmup + cosine learning-rate schedule.

The multiplier of the peak lr: linear over `warmup` steps, then a cosine down to `min_ratio` at `total`:

>>> [round(lr_factor(step, warmup=2, total=10, min_ratio=0.1), 3) for step in (0, 1, 2, 6, 10, 20)]
[0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
"""

from __future__ import annotations

import math

import torch

from pipeline.config.schema import TrainConfig


def build_optimizer(model, tc: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": tc.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas, fused=device.type == "cuda")


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, tc: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tc.warmup_steps, total_steps, tc.min_lr_ratio)
    )
