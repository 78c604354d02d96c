"""Training FLOPs per token and model FLOPs utilisation (MFU).

    flops_per_token = 6 * W + 12 * L * d * T

W is the number of weights that take part in a matrix multiplication: every linear layer — the attention
projections (q, k, v, o; with grouped-query attention k and v are narrower), the MLP (SwiGLU's gate, up and
down at their actual width) and the output layer (vocab × d; counted even when it shares its weights with the
input embedding, because the multiplication happens either way). Each such weight does one multiply-add
(2 FLOPs) per token forward and two backward (gradient of the input and of the weight): 6 W. Attention's
score and value products add 2 · 2 · T · d per layer and token forward, 12 L d T with the backward pass, counted
without the causal mask's savings (as torch's own counter does for eager attention). Embedding lookups, norms,
biases, activations and the loss are not matrix multiplications and are left out (well under 1 %).
Recomputation (activation checkpointing) is not counted: MFU counts the FLOPs the model needs, not the FLOPs
the hardware ran. `tests/test_flops.py` checks the formula against `torch.utils.flop_counter.FlopCounterMode`
on real models (tied and untied outputs, GQA, a large vocabulary, GPT-2) within 2 %.

Other conventions count less, so their FLOP/s and MFU are not comparable with ours (tokens/s is):
- PaLM (Chowdhery et al. 2022, appendix B) and earlier labnote versions: 6 N + 12 L d T with N the
  non-embedding parameters, which leaves the output layer out (35 % of the smoke model's FLOPs; up to about
  half for a large vocabulary on a small model);
- Lingua's logs (apps/main): 6 N' + 7 L d T, where N' keeps an untied output layer and the attention term
  halves flash-attention's 14 L d T for the causal mask.

>>> flops_per_token(1_000_000, layers=2, dim=64, seq_len=128)  # 6 * 1e6 + 12 * 2 * 64 * 128
6196608

A custom model (`model.custom`, an architecture without this formula) gets its FLOPs per token from torch's
`FlopCounterMode` instead: one forward and backward pass over one sequence of `seq_len` random tokens, divided by
`seq_len` (`counted_flops_per_token`; the operations torch has formulas for: matrix products, convolutions and the
fused attention kernels it knows — not elementwise work, like the formula; on a CPU, `sdpa` attention runs a kernel
the counter does not see, so write attention as matrix products or use `eager` to have it counted).

W may also come as `parameter_counts(model)` (its `matmul` count); MFU is a fraction, and there is none
without a peak (a CPU or a GPU missing from the datasheet table):

>>> flops_per_token({"total": 1_500_000, "matmul": 1_000_000}, layers=2, dim=64, seq_len=128)
6196608
>>> mfu(achieved_flops(6_196_608, tokens_per_s=10_000), peak_flops_per_s=1.0e12)
0.06196608
>>> mfu(6.2e10, None) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping


def matmul_weights(model_or_counts) -> int:
    """W from a model, from `pipeline.model.parameter_counts(model)`, or given directly as an int."""
    if isinstance(model_or_counts, int):
        return model_or_counts
    if isinstance(model_or_counts, Mapping):
        return int(model_or_counts["matmul"])
    from pipeline.model import parameter_counts

    return parameter_counts(model_or_counts)["matmul"]


def flops_per_token(model_or_counts, layers: int, dim: int, seq_len: int) -> int:
    """Training FLOPs (forward + backward) per token: 6 W + 12 L d T."""
    return 6 * matmul_weights(model_or_counts) + 12 * layers * dim * seq_len


def achieved_flops(flops_per_tok: float, tokens_per_s: float) -> float:
    """FLOP/s the model's arithmetic needed at this throughput."""
    return flops_per_tok * tokens_per_s


def mfu(achieved_flops_per_s: float, peak_flops_per_s: float | None) -> float | None:
    """Achieved over peak FLOP/s (a fraction, not a percentage); None when there is no peak to compare with."""
    if not peak_flops_per_s:
        return None
    return achieved_flops_per_s / peak_flops_per_s


def counted_flops_per_token(model, seq_len: int, vocab_size: int, device) -> int:
    """Training FLOPs per token as torch's FlopCounterMode counts one forward + backward of one sequence."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    with torch.random.fork_rng(devices=[device] if getattr(device, "type", "cpu") == "cuda" else []):
        torch.manual_seed(0)
        ids = torch.randint(0, vocab_size, (1, seq_len), device=device)
        counter = FlopCounterMode(display=False)
        model.train()
        with counter:
            model(input_ids=ids, labels=ids).loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return int(round(counter.get_total_flops() / seq_len))
