"""Token-level scoring of a causal LM on fixed sequences: summed loss, correct next tokens, NaN/Inf counts.

Shared by the train stage's validation passes and the perplexity stage, so both report the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def _sequence_losses(model, batch: torch.Tensor, device: torch.device, precision: str) -> torch.Tensor:
    """Per-token losses (each sequence's mean, repeated) from a model that returns only a mean loss."""
    out = []
    for row in batch:
        with autocast_for(device, precision):
            loss = model(input_ids=row[None], labels=row[None]).loss.float()
        out.append(loss.expand(row.numel() - 1))
    return torch.cat(out)


@torch.no_grad()
def score(
    model, batches: Iterable[torch.Tensor], device: torch.device, precision: str, per_row: list | None = None
) -> dict:
    """Mean loss over all predicted tokens of the batches whose loss is finite. `per_row`, when given, receives
    each scored sequence's (loss sum in nats, predicted tokens) of the finite batches, in order."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    tokens = valid = nan = inf = n_batches = 0
    for batch in batches:
        batch = batch.to(device)
        with autocast_for(device, precision):
            logits = model(input_ids=batch).logits
        targets = batch[:, 1:]
        if logits is None:  # a custom model that returns only its loss: one mean per sequence, no accuracy
            token_losses = _sequence_losses(model, batch, device, precision)
        else:
            logits = logits[:, :-1].float()
            token_losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        losses = token_losses.sum()
        n_batches += 1
        value = losses.item()  # one sync per eval batch is fine: eval is not the hot path
        if math.isnan(value):
            nan += 1
            continue
        if math.isinf(value):
            inf += 1
            continue
        valid += 1
        if per_row is not None:
            rows = token_losses.double().view(targets.shape).sum(dim=1).tolist()
            per_row.extend((r, targets.size(1)) for r in rows)
        loss_sum += losses.double()
        if logits is None:
            correct = None
        elif correct is not None:
            correct += (logits.argmax(-1) == targets).sum()
        tokens += targets.numel()
    model.train(was_training)
    mean = (loss_sum / tokens).item() if tokens else float("nan")
    return {
        "loss": mean,
        "perplexity": math.exp(mean) if tokens and mean < 700 else float("inf") if tokens else float("nan"),
        "accuracy": correct.item() / tokens if tokens and correct is not None else float("nan"),
        "tokens": tokens,
        "batches": n_batches,
        "valid_batches": valid,
        "nan_count": nan,
        "inf_count": inf,
    }
