"""Builders for `model.custom` in tests: wrong ones (bad return type, no labels argument) and a transformers one."""

from __future__ import annotations

from torch import nn


def not_a_module(section: dict, vocab_size: int):
    return {"dim": section["dim"]}


class NoLabels(nn.Module):
    def forward(self, input_ids):
        return input_ids


def without_labels(section: dict, vocab_size: int):
    return NoLabels()


def llama(section: dict, vocab_size: int):
    """A transformers model given as a custom one: its FLOPs are counted, and lm-eval can evaluate it."""
    from pipeline.config.schema import ModelConfig
    from pipeline.model import build_model

    keys = {k: section[k] for k in ("dim", "layers", "heads", "max_seq_len", "attn_implementation")}
    return build_model(ModelConfig(**keys), vocab_size)
