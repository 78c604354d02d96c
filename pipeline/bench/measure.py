"""Measure one benchmark variant in this process (the sweep starts a fresh process for each).

Warm-up steps run first and are not timed; then peak-memory counters are reset and each measured step
is timed between device synchronisations. GPU memory comes from torch (allocated / reserved) and, when
`pynvml` (nvidia-ml-py) is importable, the process's memory and the board's energy counter from NVML, the
device matched by UUID. On CPU, memory is
the process's peak resident set size (warm-up included: CPU has no resettable counter).
"""

from __future__ import annotations

import resource
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch

from pipeline.bench.build import build_variant_model, check_supported, mismatches, resolved_settings
from pipeline.config.schema import Experiment
from pipeline.evaluate.scoring import DTYPES
from pipeline.train.runtime import pick_device


class SyntheticTokens(torch.utils.data.Dataset):
    """Random token sequences: speed does not depend on the text, and no dataset is needed."""

    def __init__(self, vocab: int, seq_len: int, n: int, seed: int = 0):
        self.data = torch.from_numpy(np.random.default_rng(seed).integers(0, vocab, (n, seq_len), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _nvml(device: torch.device):
    """NVML and the handle of `device`, matched by UUID (NVML's indices are not CUDA's under
    CUDA_VISIBLE_DEVICES); (None, None) without nvidia-ml-py, a driver, or a match."""
    from pipeline import gpu

    nv = gpu.nvml()
    index = device.index if device.index is not None else torch.cuda.current_device()
    handle = gpu.nvml_handle(nv, gpu.torch_uuid(index))
    return (nv, handle) if handle is not None else (None, None)


def _nvml_energy_mj(nv, handle) -> int | None:
    from pipeline import gpu

    return gpu.energy_mj(nv, handle)


def _nvml_process_mem(nv, handle) -> float | None:
    from pipeline import gpu

    return gpu.process_memory_gib(nv, handle)


def _step_fn(cfg: Experiment, settings: dict, model, runner, device, vocab: int):
    bc, workload = cfg.bench, cfg.bench.workload
    autocast = (
        torch.autocast(device.type, dtype=DTYPES[settings["precision"]])
        if workload == "train" and settings["precision"] != "fp32"
        else nullcontext()
    )
    if workload == "generate":
        prompts = torch.randint(
            0, vocab, (settings["batch_size"], bc.prompt_len), generator=torch.Generator().manual_seed(0)
        )
        prompts = prompts.to(device)

        def step():
            with torch.no_grad():
                model.generate(
                    input_ids=prompts,
                    attention_mask=torch.ones_like(prompts),
                    max_new_tokens=bc.new_tokens,
                    min_new_tokens=bc.new_tokens,
                    do_sample=False,
                    use_cache=settings["use_cache"],
                    pad_token_id=0,
                )

        return step, autocast, settings["batch_size"] * bc.new_tokens

    loader = torch.utils.data.DataLoader(
        SyntheticTokens(vocab, bc.seq_len, settings["batch_size"] * settings["grad_accum"] * 4),
        batch_size=settings["batch_size"],
        shuffle=False,
        num_workers=settings["num_workers"],
        pin_memory=device.type == "cuda",
        persistent_workers=settings["num_workers"] > 0,
    )
    batches = iter(())
    optimizer = (
        torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4) if workload == "train" else None
    )

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = iter(loader)
            return next(batches)

    def step():
        if workload == "forward":
            with torch.no_grad():
                runner(input_ids=next_batch().to(device, non_blocking=True))
            return
        for _ in range(settings["grad_accum"]):
            batch = next_batch().to(device, non_blocking=True)
            with autocast:
                loss = runner(input_ids=batch, labels=batch).loss / settings["grad_accum"]
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    tokens = settings["batch_size"] * bc.seq_len * (settings["grad_accum"] if workload == "train" else 1)
    return step, autocast, tokens


def measure(cfg: Experiment, settings: dict, vocab: int) -> dict:
    """Run warm-up + measured steps; return timings, memory, energy and the resolved settings."""
    bc = cfg.bench
    device = pick_device(cfg.train.device)
    check_supported(settings, device)
    model, runner = build_variant_model(cfg, settings, vocab, device)
    step, autocast, tokens_per_step = _step_fn(cfg, settings, model, runner, device, vocab)
    with autocast:
        autocast_dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    resolved = resolved_settings(model, runner, autocast_dtype, settings, bc.workload)
    model.train(bc.workload == "train")
    for _ in range(bc.warmup_steps):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    nv, handle = _nvml(device) if device.type == "cuda" else (None, None)
    energy0 = _nvml_energy_mj(nv, handle) if nv else None
    times = []
    for _ in range(bc.steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    energy1 = _nvml_energy_mj(nv, handle) if nv else None
    median = statistics.median(times)
    out = {
        "step_time_median_s": median,
        "step_time_p90_s": float(np.percentile(times, 90)),
        "step_time_mean_s": statistics.fmean(times),
        "measured_s": sum(times),
        "step_times_s": times,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step / median,
        "samples_per_s": settings["batch_size"] * (settings["grad_accum"] if bc.workload == "train" else 1) / median,
        "effective_batch": settings["batch_size"] * (settings["grad_accum"] if bc.workload == "train" else 1),
        "device": str(device),
        "resolved": resolved,
        "mismatches": mismatches(settings, resolved),
    }
    if device.type == "cuda":
        out.update(
            mem_peak_allocated_gib=torch.cuda.max_memory_allocated(device) / 2**30,
            mem_peak_reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30,
            mem_kind="cuda_peak_allocated",
            nvml_process_mem_gib=_nvml_process_mem(nv, handle) if nv else None,
            energy_j=(energy1 - energy0) / 1000 if energy0 is not None and energy1 is not None else None,
        )
    else:
        out.update(
            mem_peak_allocated_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            mem_peak_reserved_gib=None,
            mem_kind="cpu_peak_rss",
            nvml_process_mem_gib=None,
            energy_j=None,
        )
    return out
