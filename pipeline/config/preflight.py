"""Preflight: what `resolve` can check before any stage runs, each failure one line (`ConfigError`, exit 2).

- harness task names: local tasks (pipeline/tasks/, `include_path`) and lm-eval's bundled task YAMLs;
- data and tokenizer paths: local files and directories, hub tokenizers in the offline cache;
- the attention implementation and precision on the device training will use (when it is this machine);
- disk space for the planned checkpoints (`planned_bytes`), against the run directory's file system.

Without a GPU here, device checks apply only to what runs on this machine (`train.device: auto` or `cpu`):
a login node validating a job for a GPU node does not fail for lacking the GPU.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

from pipeline.config.schema import Experiment, HFSource, PretrainedTokenizer
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def preflight(cfg: Experiment, run=None) -> None:
    if cfg.imported:
        return
    _tasks(cfg)
    if cfg.train.command:  # its own data, device and checkpoints: nothing of ours to check beyond the tasks
        return
    _paths(cfg)
    _device(cfg)
    if run is not None:
        _disk(cfg, Path(run.root))


# --------------------------------------------------------------------------- harness tasks
@lru_cache(maxsize=1)
def bundled_task_names() -> frozenset[str]:
    """Task, group and tag names in lm-eval's bundled YAMLs (read as text: no lm-eval import, ~1 s)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    root = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    names: set[str] = set()
    item = re.compile(r"^\s*(?:-\s*)?(?:(?:task|group|tag)\s*:\s*)?([A-Za-z0-9_.\-]+)\s*$")
    for path in root.rglob("*.yaml"):
        names.add(path.stem)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.lstrip().startswith(("task", "group", "tag", "-")):
                m = item.match(line)
                if m:
                    names.add(m.group(1))
    return frozenset(names)


def _tasks(cfg: Experiment) -> None:
    from pipeline.evaluate.harness import LOCAL_TASKS

    harness = cfg.eval.harness
    if harness is None or "eval" not in cfg.active_stages:
        return
    for i, directory in enumerate(harness.include_path):
        if not Path(directory).is_dir():
            raise ConfigError(f"eval.harness.include_path[{i}]: directory not found: {directory}")
    local = {p.stem for d in [LOCAL_TASKS, *harness.include_path] for p in Path(d).rglob("*.yaml")}
    bundled = None
    for i, spec in enumerate(harness.specs()):
        if spec.task in local:
            continue
        bundled = bundled if bundled is not None else bundled_task_names()
        if not bundled or spec.task in bundled:
            continue
        hint = difflib.get_close_matches(spec.task, sorted(local | bundled), n=1)
        tail = f"did you mean '{hint[0]}'?" if hint else "not a local task nor one of lm-eval's"
        raise ConfigError(f"eval.harness.tasks[{i}]: unknown task {spec.task!r}; {tail}")


# --------------------------------------------------------------------------- paths
def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or os.sep in path and Path(path).exists()


def _paths(cfg: Experiment) -> None:
    tok, src = cfg.data.tokenizer, cfg.data.source
    if isinstance(tok, PretrainedTokenizer):
        path = Path(tok.path).expanduser()
        if path.exists() or _looks_local(tok.path):
            if not path.is_dir():
                raise ConfigError(f"data.tokenizer.path: directory not found: {tok.path}")
        elif os.environ.get("HF_HUB_OFFLINE") == "1" and "prepare" in cfg.active_stages:
            from huggingface_hub import try_to_load_from_cache

            found = any(
                isinstance(try_to_load_from_cache(tok.path, name), str)
                for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")
            )
            if not found:
                raise ConfigError(
                    f"data.tokenizer.path: {tok.path!r} is not in the offline cache; "
                    f"run 'make data EXP={cfg.name}' on a machine with internet"
                )
    if isinstance(src, HFSource) and src.data_files:
        for split, paths in src.data_files.items():
            for i, p in enumerate(paths):
                if "://" not in str(p) and not any(c in str(p) for c in "*?[") and not Path(p).is_file():
                    raise ConfigError(f"data.source.data_files.{split}[{i}]: file not found: {p}")


# --------------------------------------------------------------------------- device
def _device(cfg: Experiment) -> None:
    if "train" not in cfg.active_stages and "bench" not in cfg.active_stages:
        return
    device = cfg.train.device
    if cfg.model.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigError(
                "model.attn_implementation: flash_attention_2 needs the flash-attn package, which is not "
                "installed here; use sdpa (or install flash-attn on a CUDA machine)"
            )
        if device == "cpu":
            raise ConfigError("model.attn_implementation: flash_attention_2 needs a CUDA GPU, train.device is cpu")
    if device == "cuda" or cfg.train.precision == "fp32" and cfg.model.attn_implementation != "flash_attention_2":
        return  # cuda: checked where it runs (this may be a login node); fp32 runs everywhere
    if device == "auto":
        import torch

        if not torch.cuda.is_available():
            if cfg.model.attn_implementation == "flash_attention_2":
                raise ConfigError(
                    "model.attn_implementation: flash_attention_2 needs a CUDA GPU and none is visible here"
                )
            return
        if cfg.train.precision == "bf16" and not torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name(0)
            raise ConfigError(f"train.precision: bf16 is not supported by this GPU ({name}); use fp16 or fp32")


# --------------------------------------------------------------------------- disk
def estimate_parameters(cfg: Experiment) -> int:
    m, tok = cfg.model, cfg.data.tokenizer
    vocab = m.vocab_size or getattr(tok, "vocab_size", None) or (260 if tok.type == "bytes" else 50_000)
    ffn = m.ffn_dim or (4 * m.dim if m.arch in ("gpt2", "gpt_neox") else int(8 * m.dim / 3))
    mlp = (2 if m.arch in ("gpt2", "gpt_neox") else 3) * m.dim * ffn
    return vocab * m.dim * (1 if m.tie_embeddings else 2) + m.layers * (4 * m.dim * m.dim + mlp)


def checkpoint_bytes(cfg: Experiment) -> int:
    """One checkpoint: fp32 weights + AdamW's two moments (12 bytes per parameter), plus small files."""
    return 12 * estimate_parameters(cfg) + 2 * 2**20


def planned_bytes_for(cfg: Experiment) -> int:
    if "train" not in cfg.active_stages:
        return 0
    return checkpoint_bytes(cfg) * (cfg.train.keep_checkpoints + 1)  # +1: the next one is built before rotation


def planned_bytes(run_dir: Path) -> int | None:
    """The planned checkpoints of the run holding `run_dir` (for "need ≈N MB"), when its config can be read."""
    from pipeline.config.resolve import load_resolved

    for candidate in (Path(run_dir), *Path(run_dir).parents):
        if (candidate / "config.yaml").is_file():
            try:
                return planned_bytes_for(load_resolved(candidate))
            except Exception:  # noqa: BLE001 - an estimate for an error message, never an error itself
                return None
    return None


def _disk(cfg: Experiment, run_root: Path) -> None:
    need = planned_bytes_for(cfg)
    if not need:
        return
    existing = run_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    held = (
        sum(f.stat().st_size for f in (run_root / "checkpoints").rglob("*") if f.is_file())
        if (run_root / "checkpoints").is_dir()
        else 0
    )
    if free + held < need:
        raise ConfigError(
            f"no space left on device: {run_root}, need ≈{need / 2**20:,.0f} MB for "
            f"{cfg.train.keep_checkpoints + 1} checkpoints, {free / 2**20:,.0f} MB free"
        )
