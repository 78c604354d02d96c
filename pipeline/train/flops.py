"""Training FLOPs per token and model FLOPs utilisation (MFU).

    flops_per_token = 6 * N + 12 * L * d * T

N is the number of non-embedding parameters, L the number of layers, d the model dimension and T the
sequence length. This is the estimate of PaLM (Chowdhery et al. 2022, appendix B), also torchtitan's:
every non-embedding weight does one multiply-add (2 FLOPs) per token in the forward pass and two in the
backward pass (6 N), and attention's score and value products add 2 * 2 * T * d per layer forward
(12 L d T with the backward pass), counted without the causal mask's savings. Embedding lookups cost no
FLOPs, and the output projection (6 * vocab * d) is left out as in PaLM; with a byte vocabulary it is well
under 1 % of the total. Recomputation (activation checkpointing) is not counted: MFU counts the FLOPs the
model needs, not the FLOPs the hardware ran.

Lingua's logs (apps/main) count differently: 6 N' + 7 L d T, where N' keeps an untied output layer and the
attention term halves flash-attention's 14 L d T for the causal mask. At the debug_3 shape that is about
10 % fewer FLOPs per token than here, so a FLOPS or MFU figure from a Lingua log is not comparable with this
one as it stands; tokens/s is.

>>> flops_per_token(1_000_000, layers=2, dim=64, seq_len=128)  # 6 * 1e6 + 12 * 2 * 64 * 128
6196608

N may also come as `parameter_counts(model)`; MFU is a fraction, and there is none without a peak (a CPU
or a GPU missing from the datasheet table):

>>> flops_per_token({"total": 1_500_000, "non_embedding": 1_000_000}, layers=2, dim=64, seq_len=128)
6196608
>>> mfu(achieved_flops(6_196_608, tokens_per_s=10_000), peak_flops_per_s=1.0e12)
0.06196608
>>> mfu(6.2e10, None) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping


def non_embedding_parameters(model_or_counts) -> int:
    """N from a model, from `pipeline.model.parameter_counts(model)`, or given directly as an int."""
    if isinstance(model_or_counts, int):
        return model_or_counts
    if isinstance(model_or_counts, Mapping):
        return int(model_or_counts["non_embedding"])
    from pipeline.model import parameter_counts

    return parameter_counts(model_or_counts)["non_embedding"]


def flops_per_token(model_or_counts, layers: int, dim: int, seq_len: int) -> int:
    """Training FLOPs (forward + backward) per token: 6 N + 12 L d T."""
    return 6 * non_embedding_parameters(model_or_counts) + 12 * layers * dim * seq_len


def achieved_flops(flops_per_tok: float, tokens_per_s: float) -> float:
    """FLOP/s the model's arithmetic needed at this throughput."""
    return flops_per_tok * tokens_per_s


def mfu(achieved_flops_per_s: float, peak_flops_per_s: float | None) -> float | None:
    """Achieved over peak FLOP/s (a fraction, not a percentage); None when there is no peak to compare with."""
    if not peak_flops_per_s:
        return None
    return achieved_flops_per_s / peak_flops_per_s
