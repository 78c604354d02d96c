"""Build a randomly initialised Hugging Face causal LM from the `model:` section.

>>> from pipeline.config.schema import ModelConfig
>>> m = build_model(ModelConfig(dim=64, layers=2, heads=4, max_seq_len=64), vocab_size=300, eos_token_id=0)
>>> type(m).__name__
'LlamaForCausalLM'
"""

from __future__ import annotations

from pipeline.config.schema import ModelConfig


def hf_config(spec: ModelConfig, vocab_size: int, eos_token_id: int | None = None):
    from transformers import AutoConfig

    vocab = spec.vocab_size or vocab_size
    common = {
        "vocab_size": vocab,
        "tie_word_embeddings": spec.tie_embeddings,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
    }
    if spec.arch == "gpt2":
        kwargs = {
            "n_embd": spec.dim,
            "n_layer": spec.layers,
            "n_head": spec.heads,
            "n_positions": spec.max_seq_len,
            "n_inner": spec.ffn_dim,
            "resid_pdrop": spec.dropout,
            "embd_pdrop": spec.dropout,
            "attn_pdrop": spec.dropout,
        }
    else:
        # SwiGLU MLPs use 8/3 * dim to match a 4 * dim GELU MLP in parameters; round to a multiple of 64.
        ffn = spec.ffn_dim or (4 * spec.dim if spec.arch == "gpt_neox" else 64 * -(-8 * spec.dim // 3 // 64))
        kwargs = {
            "hidden_size": spec.dim,
            "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads,
            "intermediate_size": ffn,
            "max_position_embeddings": spec.max_seq_len,
            "attention_dropout": spec.dropout,
        }
        if spec.arch != "gpt_neox":
            kwargs["num_key_value_heads"] = spec.kv_heads or spec.heads
        else:
            kwargs["hidden_dropout"] = spec.dropout
    return AutoConfig.for_model(spec.arch, **kwargs, **common)


def build_model(spec: ModelConfig, vocab_size: int, eos_token_id: int | None = None):
    from transformers import AutoModelForCausalLM

    config = hf_config(spec, vocab_size, eos_token_id)
    return AutoModelForCausalLM.from_config(config, attn_implementation=spec.attn_implementation)


def matmul_weight_count(model) -> int:
    """Weights of every linear layer (GPT-2's Conv1D included), each counted where it multiplies: a tied
    output layer's weights count once more as the output projection (pipeline/train/flops.py)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))


def parameter_counts(model) -> dict[str, int]:
    """Total, trainable, non-embedding parameters (tied weights counted once) and the weights that multiply."""
    unique = list({id(p): p for p in model.parameters()}.values())
    embed = {
        id(p)
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
        if m is not None
        for p in m.parameters()
    }
    positions = getattr(getattr(model, "transformer", None), "wpe", None)  # gpt2's learned positions
    if positions is not None:
        embed |= {id(p) for p in positions.parameters()}
    total = sum(p.numel() for p in unique)
    embedding = sum(p.numel() for p in unique if id(p) in embed)
    return {
        "total": total,
        "trainable": sum(p.numel() for p in unique if p.requires_grad),
        "embedding": embedding,
        "non_embedding": total - embedding,
        "matmul": matmul_weight_count(model),
    }
