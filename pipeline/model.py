"""Build a randomly initialised Hugging Face causal LM from the `model:` section, or your own model.

`model.custom: "package.module:function"` names a function `build(section: dict, vocab_size: int)` returning a
`torch.nn.Module` whose `forward(input_ids, labels=None)` returns, given labels (= input_ids; the model shifts
them, as Hugging Face causal LMs do), the mean next-token cross-entropy — a tensor, or an object with `.loss` —
and without labels the logits `(batch, seq, vocab)` (or an object with `.logits`). A forward hook gives every
such output the `.loss` / `.logits` of a transformers output, so the train loop, validation and perplexity treat
it like any model; one that returns only a loss is scored sequence by sequence (no accuracy). Its checkpoint is
its state dict (`model.safetensors`) and `custom_model.json` (the function, the model section, the vocabulary
size and the module's class), from which `load_checkpoint` rebuilds it.

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
    if spec.custom:
        return build_custom(spec, vocab_size)
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
    import torch

    unique = list({id(p): p for p in model.parameters()}.values())
    if not is_custom(model):
        embedding_modules = (model.get_input_embeddings(), model.get_output_embeddings())
    else:  # a custom model: its embedding tables
        embedding_modules = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    embed = {id(p) for m in embedding_modules if m is not None for p in m.parameters()}
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


# --------------------------------------------------------------------------- custom models
CUSTOM_FILE = "custom_model.json"


def custom_function(target: str):
    """The function `model.custom` names; a missing module or function is one line (exit 2)."""
    import importlib

    from pipeline.errors import ConfigError

    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"model.custom: cannot import module '{module_name}' ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"model.custom: module '{module_name}' has no function '{name}'")
    return fn


def custom_section(spec: ModelConfig) -> dict:
    return spec.model_dump(mode="json")


def build_custom(spec: ModelConfig, vocab_size: int, section: dict | None = None):
    import inspect

    import torch

    from pipeline.errors import ConfigError

    vocab = spec.vocab_size or vocab_size
    model = custom_function(spec.custom)(section or custom_section(spec), vocab)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model.custom: {spec.custom} returned {type(model).__name__}, expected a torch.nn.Module")
    params = inspect.signature(model.forward).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    missing = [n for n in ("input_ids", "labels") if n not in params and not takes_kwargs]
    if missing:
        raise ConfigError(
            f"model.custom: {type(model).__name__}.forward has no {' / '.join(missing)} argument; "
            f"expected forward(input_ids, labels=None)"
        )
    model.register_forward_hook(_as_model_output, with_kwargs=True)
    model.labnote_custom = {"custom": spec.custom, "vocab_size": vocab, "model": section or custom_section(spec)}
    return model


def _as_model_output(module, args, kwargs, out):
    """A tensor (loss given labels, else logits) or an object with .loss/.logits -> a transformers output."""
    import torch
    from transformers.modeling_outputs import CausalLMOutput
    from transformers.utils import ModelOutput

    if isinstance(out, ModelOutput):
        return out
    if isinstance(out, torch.Tensor):
        labels = kwargs.get("labels", args[1] if len(args) > 1 else None)
        return CausalLMOutput(loss=out) if labels is not None or out.dim() == 0 else CausalLMOutput(logits=out)
    return CausalLMOutput(loss=getattr(out, "loss", None), logits=getattr(out, "logits", None))


def is_custom(model) -> bool:
    return hasattr(model, "labnote_custom")


def is_transformers_model(model) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def save_custom(model, folder) -> None:
    """A custom model's checkpoint files: its state dict and how to rebuild it."""
    import json

    from safetensors.torch import save_model

    save_model(model, str(folder / "model.safetensors"))  # shared (tied) tensors are stored once
    cls = type(model)
    info = {**model.labnote_custom, "class": f"{cls.__module__}.{cls.__qualname__}",
            "transformers": is_transformers_model(model)}  # fmt: skip
    (folder / CUSTOM_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def load_custom_weights(model, path, device) -> None:
    """Weights of a custom checkpoint into `model`; every tensor must match (one line otherwise)."""
    from safetensors.torch import load_model

    from pipeline.errors import UserError

    try:
        load_model(model, str(path / "model.safetensors"), strict=True, device=str(device))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise UserError(
            f"{path}/model.safetensors: does not match the custom model ({first}); the model changed without the "
            f"train inputs changing? Move the checkpoint aside (or `make clean EXP=<exp>`) to train afresh"
        ) from None


def load_checkpoint(path, device):
    """The model of a checkpoint folder: a custom one rebuilt from custom_model.json, else a transformers one."""
    import json
    from pathlib import Path

    path = Path(path)
    if (path / CUSTOM_FILE).is_file():
        info = json.loads((path / CUSTOM_FILE).read_text(encoding="utf-8"))
        spec = ModelConfig.model_validate(info["model"])
        model = build_custom(spec, info["vocab_size"], info["model"]).to(device)
        load_custom_weights(model, path, device)
        return model
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).to(device)
