"""Training FLOPs per token (against a hand count of a real model), MFU, and the device peak FLOP/s."""

from __future__ import annotations

import math

import pytest

from pipeline.config.schema import ModelConfig
from pipeline.model import build_model, parameter_counts
from pipeline.train.flops import achieved_flops, flops_per_token, mfu
from pipeline.train.peak import datasheet_peak, measure_matmul_peak


def llama_non_embedding_by_hand(dim: int, layers: int, heads: int, kv_heads: int, ffn: int) -> int:
    """Weights of a Llama decoder, counted from the architecture (no biases anywhere)."""
    kv_dim = kv_heads * (dim // heads)
    attention = dim * dim + dim * kv_dim + dim * kv_dim + dim * dim  # q, k, v, o projections
    mlp = dim * ffn + dim * ffn + ffn * dim  # gate, up, down
    norms = dim + dim  # RMSNorm before attention and before MLP
    return layers * (attention + mlp + norms) + dim  # + the final RMSNorm


@pytest.mark.parametrize("kv_heads,tie", [(4, True), (2, True), (4, False)])
def test_flops_per_token_counts_every_weight_that_multiplies(kv_heads: int, tie: bool):
    dim, layers, heads, ffn, vocab, seq = 64, 2, 4, 192, 300, 32
    model = build_model(
        ModelConfig(
            arch="llama",
            dim=dim,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            ffn_dim=ffn,
            max_seq_len=seq,
            tie_embeddings=tie,
        ),
        vocab_size=vocab,
    )
    n = llama_non_embedding_by_hand(dim, layers, heads, kv_heads, ffn)
    norms = 2 * dim * layers + dim
    matmul = n - norms + vocab * dim  # every linear weight, and the output layer whether tied or not
    expected = 6 * matmul + 12 * layers * dim * seq
    assert flops_per_token(model, layers, dim, seq) == expected
    # the three ways of giving W agree
    assert flops_per_token(parameter_counts(model), layers, dim, seq) == expected
    assert flops_per_token(matmul, layers, dim, seq) == expected
    # embeddings (tied or not) are what the non-embedding count leaves out, and nothing else
    assert parameter_counts(model)["total"] == n + vocab * dim * (1 if tie else 2)


SHAPES = {  # (arch, dim, layers, heads, kv_heads, ffn, vocab, seq, tied)
    "llama tied": ("llama", 64, 2, 4, 4, 192, 300, 32, True),
    "llama untied GQA": ("llama", 96, 3, 6, 2, 256, 500, 48, False),
    "llama large vocabulary": ("llama", 32, 1, 2, 2, 96, 32_000, 16, True),
    "gpt2": ("gpt2", 64, 2, 4, None, 256, 400, 32, True),
}


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_flops_per_token_agrees_with_torch_flop_counter(shape: str):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    arch, dim, layers, heads, kv, ffn, vocab, seq, tie = SHAPES[shape]
    spec = ModelConfig(arch=arch, dim=dim, layers=layers, heads=heads, kv_heads=kv, ffn_dim=ffn, max_seq_len=seq,
                       tie_embeddings=tie, attn_implementation="eager")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec, vocab_size=vocab).train()
    batch = torch.randint(0, vocab, (2, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=batch, labels=batch).loss.backward()
    measured = counter.get_total_flops() / batch.numel()
    assert flops_per_token(model, layers, dim, seq) == pytest.approx(measured, rel=0.02)


def test_attention_term_grows_with_sequence_length_only():
    per_token_128 = flops_per_token(1000, layers=3, dim=64, seq_len=128)
    per_token_256 = flops_per_token(1000, layers=3, dim=64, seq_len=256)
    assert per_token_256 - per_token_128 == 12 * 3 * 64 * 128


def test_mfu_is_achieved_over_peak_and_none_without_a_peak():
    fpt, tokens_per_s, peak = flops_per_token(10**8, 8, 1024, 2048), 4.7e5, 989.4e12
    achieved = achieved_flops(fpt, tokens_per_s)
    assert achieved == pytest.approx(fpt * tokens_per_s)
    assert mfu(achieved, peak) == pytest.approx(fpt * tokens_per_s / peak)
    assert mfu(achieved, None) is None
    assert mfu(achieved, 0.0) is None


@pytest.mark.parametrize(
    "name,peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.4e12),  # the SXM part's CUDA name
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA L40S", 362.05e12),
        ("NVIDIA A10G", None),  # not A10: no datasheet figure
        ("Tesla V100-SXM2-16GB", None),  # no bf16 tensor cores
        ("Some Future Accelerator", None),
        ("cpu", None),
        (None, None),
    ],
)
def test_datasheet_peak_by_device_name(name, peak):
    assert datasheet_peak(name) == peak


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_measured_peak_is_positive_and_says_what_it_measured(dtype_name: str):
    import torch

    result = measure_matmul_peak("cpu", dtype=getattr(torch, dtype_name), seconds=0.1, n=128)
    assert result["dtype"] == dtype_name
    assert result["device"] == "cpu"
    assert result["n"] == 128 and result["repeats"] >= 1
    assert result["seconds"] > 0
    assert math.isfinite(result["flops_per_s"]) and result["flops_per_s"] > 0
    assert result["name"]


def test_measured_peak_defaults_to_fp32_on_cpu():
    result = measure_matmul_peak("cpu", seconds=0.05, n=64)
    assert result["dtype"] == "float32"
