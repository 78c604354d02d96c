"""A causal MLP-mixer language model: no attention, no transformers class — an architecture labnote does not know,
trained by labnote's own loop through `model.custom: "examples.custom_model.model:build"`.

Each block mixes tokens with a learned lower-triangular `max_seq_len × max_seq_len` matrix (position t sees only
positions ≤ t, so it stays a causal LM) and then channels with an MLP, both pre-norm with residuals. The output
layer shares the embedding's weights.

The contract (pipeline/model.py): `build(section, vocab_size)` gets the `model:` section as a dict — labnote's keys
(`dim`, `layers`, `max_seq_len`, …) and this model's own (`expansion`) — and returns a `torch.nn.Module` whose
`forward(input_ids, labels=None)` returns the mean next-token loss given labels, else the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalTokenMixing(nn.Module):
    def __init__(self, max_seq_len: int):
        super().__init__()
        mask = torch.tril(torch.ones(max_seq_len, max_seq_len))
        self.register_buffer("mask", mask, persistent=False)
        # Start as a running mean of the past, so the untrained model's mixing is well scaled.
        self.weight = nn.Parameter(mask / mask.sum(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.size(1)
        return (self.weight[:t, :t] * self.mask[:t, :t]) @ x


class MixerBlock(nn.Module):
    def __init__(self, dim: int, max_seq_len: int, expansion: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = CausalTokenMixing(max_seq_len)
        self.channels = nn.Sequential(
            nn.Linear(dim, expansion * dim), nn.GELU(), nn.Linear(expansion * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tokens(self.norm1(x))
        return x + self.channels(self.norm2(x))


class CausalMixerLM(nn.Module):
    def __init__(self, vocab_size: int, dim: int, layers: int, max_seq_len: int, expansion: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList(MixerBlock(dim, max_seq_len, expansion, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x))
        if labels is None:
            return logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1))


def build(section: dict, vocab_size: int) -> CausalMixerLM:
    return CausalMixerLM(
        vocab_size,
        dim=section["dim"],
        layers=section["layers"],
        max_seq_len=section["max_seq_len"],
        expansion=int(section.get("expansion", 2)),
        dropout=section["dropout"],
    )
