"""Build the model one benchmark variant asks for, and record what is actually in effect.

Seed 004 compared FP32 and BF16 and got identical numbers because the precision was hard-coded
elsewhere. So every variant reports `resolved` next to `requested`, read back from the objects
(parameter dtypes, the autocast dtype in force, `config._attn_implementation`, 4-bit layers, trainable
parameters, compiled or not), and the report flags any difference.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections import Counter
from pathlib import Path

import torch

from pipeline.config.schema import Experiment
from pipeline.evaluate.scoring import DTYPES


class Skip(Exception):
    """The variant cannot run on this machine (missing GPU or package); recorded, not a failure."""


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_supported(settings: dict, device: torch.device) -> None:
    if settings["finetune"] == "qlora" and not _importable("bitsandbytes"):
        raise Skip("QLoRA needs the bitsandbytes package, which is not installed")
    if settings["attn_implementation"] == "flash_attention_2":
        if device.type != "cuda":
            raise Skip(f"flash_attention_2 needs a CUDA GPU; this process runs on {device.type}")
        if importlib.util.find_spec("flash_attn") is None:
            raise Skip("flash_attention_2 needs the flash-attn package, which is not installed")
    if settings["precision"] == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise Skip("bf16 is not supported by this GPU")


def _base_dir(cfg: Experiment, vocab_size: int, workdir: Path) -> Path:
    """A saved Hugging Face model dir: the pretrained one, or the experiment's model with random weights."""
    if cfg.bench.pretrained:
        return Path(cfg.bench.pretrained)
    from pipeline.model import build_model

    torch.manual_seed(0)
    model = build_model(cfg.model, vocab_size)
    path = workdir / "base"
    model.save_pretrained(path)
    return path


def _custom_variant(cfg: Experiment, settings: dict, vocab_size: int, device: torch.device):
    """A `model.custom` module with random weights: full training or forward only (no transformers features)."""
    from pipeline.model import build_custom

    why = [
        reason
        for reason, unsupported in (
            ("generate needs a transformers model's generate()", cfg.bench.workload == "generate"),
            (f"finetune {settings['finetune']} (peft) needs a transformers model", settings["finetune"] != "full"),
            ("gradient checkpointing needs a transformers model", settings["gradient_checkpointing"]),
        )
        if unsupported
    ]
    if why:
        raise Skip(f"model.custom: {'; '.join(why)}")
    torch.manual_seed(0)
    model = build_custom(cfg.model, vocab_size).to(device)
    if cfg.bench.workload != "train":
        model = model.to(DTYPES[settings["precision"]]).eval()
    return model, torch.compile(model) if settings["compile"] else model


def build_variant_model(cfg: Experiment, settings: dict, vocab_size: int, device: torch.device):
    from transformers import AutoModelForCausalLM

    if cfg.model.custom and not cfg.bench.pretrained:
        return _custom_variant(cfg, settings, vocab_size, device)
    workload = cfg.bench.workload
    with tempfile.TemporaryDirectory() as tmp:
        base = _base_dir(cfg, vocab_size, Path(tmp))
        kwargs = {"attn_implementation": settings["attn_implementation"]}
        if workload != "train":  # inference: the weights themselves are stored in the requested dtype
            kwargs["dtype"] = DTYPES[settings["precision"]]
        if settings["finetune"] == "qlora":
            from transformers import BitsAndBytesConfig

            compute = DTYPES[settings["precision"]] if settings["precision"] != "fp32" else torch.float32
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute
            )
            kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else "cpu"
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if settings["finetune"] != "qlora":
        model = model.to(device)
    if settings["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    if settings["finetune"] in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if settings["finetune"] == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=bool(settings["gradient_checkpointing"])
            )
        model = get_peft_model(
            model,
            LoraConfig(
                r=settings["lora_r"],
                lora_alpha=2 * settings["lora_r"],
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            ),
        )
    if workload != "train":
        model.eval()
    runner = torch.compile(model) if settings["compile"] else model
    return model, runner


def resolved_settings(model, runner, autocast_dtype: torch.dtype | None, settings: dict, workload: str) -> dict:
    """What is really in effect, in the same vocabulary as the requested settings."""
    dtypes = Counter(str(p.dtype).removeprefix("torch.") for p in model.parameters())
    # Count by class name: importing bitsandbytes just to count would fail where it is not installed.
    n4 = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    base = getattr(model, "get_base_model", lambda: model)()
    float_dtypes = {d for d in dtypes if d.startswith(("float", "bfloat"))}
    if workload == "train":
        precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(autocast_dtype, "fp32")
    else:
        precision = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(
            max(float_dtypes, key=lambda d: dtypes[d]) if float_dtypes else "", "unknown"
        )
    finetune = "qlora" if n4 else ("lora" if hasattr(model, "peft_config") else "full")
    return {
        "precision": precision,
        # None: not a setting of this model (a custom one); mismatches() compares only what the model has
        "attn_implementation": getattr(getattr(base, "config", None), "_attn_implementation", None),
        "finetune": finetune,
        "compile": runner is not model,
        "gradient_checkpointing": bool(getattr(base, "is_gradient_checkpointing", False)),
        "param_dtypes": dict(dtypes),
        "autocast_dtype": str(autocast_dtype).removeprefix("torch.") if autocast_dtype else None,
        "linear_4bit_layers": n4,
        "trainable_params": trainable,
        "total_params": total,
    }


MISMATCH_KEYS = ("precision", "attn_implementation", "finetune", "compile", "gradient_checkpointing")


def mismatches(requested: dict, resolved: dict) -> list[str]:
    return [
        f"{k}: requested {requested[k]!r}, in effect {resolved[k]!r}"
        for k in MISMATCH_KEYS
        if requested.get(k) is not None and resolved.get(k) is not None and requested[k] != resolved.get(k)
    ]
