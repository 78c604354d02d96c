"""The train stage's whole step path against a bare PyTorch loop: tokens/s, MFU, peak memory, paired overhead.

Seed 000 trained a 103M byte-level Llama (dim 1024, 8 layers, 8 heads, seq 2048, batch 32, bf16,
torch.compile) at ~470K tokens/s on one H100. This script prepares a scratch run with the real prepare stage
(or copies `--prepared-from RUN`'s prepared data), builds the train stage's own `Trainer` on it and advances
its real loop (`Trainer.fit_steps`, the loop `make train` runs) one step at a time: each step takes its batch
from the prepared token file, trains, logs at `train.log_every`, validates at `train.eval_every` and writes a
checkpoint at `train.checkpoint_every`, as configured. The bare loop starts from a copy of the same initial
weights and does what a hand-written loop must: the same batches' rows from the same token file, forward,
backward, clip, AdamW, and at the same intervals a loss read, a forward pass over the same validation
batches and a `torch.save` of model and optimizer. The two loops take turns step by step (who goes first
alternates), with the device synchronised around every step, so drift and neighbour load hit both alike.

The overhead is the paired ratio: the mean over steps of log(pipeline step time / bare step time), back-
transformed, with a 95% t interval over the pairs; the ratio of total times (every validation and checkpoint
included: their cost amortised) comes with a paired bootstrap interval.

    python benchmarks/train_throughput.py --device cuda                       # debug_3 shape, bf16, compile
    python benchmarks/train_throughput.py --shape smoke --device cpu          # experiments/smoke.yaml on CPU

Prints a table and writes a JSON record (--out). Results go in benchmarks/README.md with the device named.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Each shape is an experiment file plus SET overrides (the data must prepare offline). debug_3 keeps
# experiments/debug_3.yaml's model and train sections (the seed's 103M, bf16, compile) on a builtin corpus.
SHAPES = {
    "debug_3": ("debug_3", "data.source.type=builtin data.source.name=gensim-wiki"),
    "smoke": ("smoke", ""),
    # CI size: seconds on 2 cores
    "tiny": (
        "smoke",
        "model.dim=64 model.layers=2 model.heads=4 train.batch_size=4 train.warmup_steps=2 data.tokenizer.type=bytes "
        "data.source.type=builtin data.source.name=kjv data.max_documents=60",
    ),
}


def experiment(shape: str, device: str, precision: str, compile_: bool, steps: int, extra: list[str] = ()):
    from pipeline.config.load import load_experiment

    name, overrides = SHAPES[shape]
    settings = [f"train.device={device}", f"train.precision={precision}", f"train.compile={compile_}"]
    return load_experiment(name, [overrides, *settings, f"train.steps={steps}", *extra], root=REPO / "experiments")


# ---------------------------------------------------------------------------- statistics (tests/test_bench_train.py)
def paired_overhead(pipeline_s, bare_s, confidence: float = 0.95) -> dict:
    """Overhead from paired step times: exp(mean log(p_i / b_i)) - 1 and its t interval over the pairs.

    Pairing removes what both steps of a pair share (the machine's load at that moment); the log makes the
    ratio symmetric and the mean of logs is what a t interval is exact for when the log-ratios are normal.
    """
    from scipy import stats

    r = np.log(np.asarray(pipeline_s, dtype=float) / np.asarray(bare_s, dtype=float))
    n, mean = r.size, float(r.mean())
    sd = float(r.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
    return {
        "pairs": n,
        "mean_log_ratio": mean,
        "sd_log_ratio": sd,
        "overhead": math.expm1(mean),
        "ci_low": math.expm1(mean - half),
        "ci_high": math.expm1(mean + half),
        "confidence": confidence,
    }


def total_overhead(pipeline_s, bare_s, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> dict:
    """sum(p) / sum(b) - 1 (rare slow steps, validation and checkpoints, weigh by their time) with a paired
    percentile bootstrap interval (pairs resampled together, a fixed seed: the same data give the same interval)."""
    p, b = np.asarray(pipeline_s, dtype=float), np.asarray(bare_s, dtype=float)
    idx = np.random.default_rng(seed).integers(0, p.size, size=(resamples, p.size))
    boot = p[idx].sum(axis=1) / b[idx].sum(axis=1) - 1
    alpha = (1 - confidence) / 2
    return {
        "pairs": int(p.size),
        "overhead": float(p.sum() / b.sum() - 1),
        "ci_low": float(np.quantile(boot, alpha)),
        "ci_high": float(np.quantile(boot, 1 - alpha)),
        "confidence": confidence,
    }


def step_kinds(steps: list[int], tc) -> list[str]:
    """What the configured intervals make each step do besides training (the stage's `fit_steps` rules)."""
    last = max(steps)
    kinds = []
    for s in steps:
        kind = "train"
        if s % tc.checkpoint_every == 0 or s == last:
            kind = "checkpoint"
        elif s % tc.eval_every == 0:
            kind = "validation"
        elif s % tc.log_every == 0:
            kind = "log"
        kinds.append(kind)
    return kinds


# ---------------------------------------------------------------------------- the two loops
def prepare_run(cfg, work: Path, prepared_from: Path | None) -> Path:
    """A scratch run directory with prepared data (never runs/: the benchmark writes checkpoints)."""
    from pipeline.data.prepare import run_prepare

    run_dir = work / "run"
    if prepared_from is not None:
        shutil.copytree(prepared_from / "prepared", run_dir / "prepared")
    else:
        run_prepare(cfg, run_dir)
    return run_dir


class PipelineLoop:
    """The train stage itself: `Trainer.from_run` on the scratch run and its `fit_steps` generator."""

    def __init__(self, cfg, run_dir: Path, rt, peak: dict):
        from pipeline.rundir import RunDir
        from pipeline.train.loop import Trainer

        self.trainer = Trainer.from_run(cfg, RunDir(run_dir), rt, peak)
        # The weights before any step, for the bare loop to start from (on the CPU: not in the device's peak).
        self.initial = {k: v.detach().to("cpu", copy=True) for k, v in self.trainer.model.state_dict().items()}
        self.steps = self.trainer.fit_steps("benchmark")

    def step(self) -> int:
        return next(self.steps)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class BareLoop:
    """A hand-written loop over the same rows of the same token file, from a copy of the same initial weights."""

    def __init__(self, cfg, pipeline: PipelineLoop, work: Path):
        from pipeline.model import build_model

        trainer = pipeline.trainer
        tc, device = cfg.train, trainer.rt.device
        # Its own copy of the plan (same batches): sharing one would make the loops evict each other's cached
        # epoch order at an epoch boundary.
        self.cfg, self.device, self.plan = cfg, device, copy.copy(trainer.plan)
        self.seq, self.val = trainer.train_seq, trainer.val_seq
        self.model = build_model(cfg.model, trainer.model.config.vocab_size, trainer.model.config.eos_token_id)
        self.model.load_state_dict(pipeline.initial)
        self.model.to(device)
        self.runner = torch.compile(self.model) if tc.compile else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, betas=tc.betas,
                                           weight_decay=tc.weight_decay, fused=device.type == "cuda")  # fmt: skip
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[tc.precision]
        self.path, self.index, self.last, self.first_loss = work / "bare.pt", 0, tc.steps, None
        self.runner.train()

    def _rows(self, rows) -> torch.Tensor:
        return torch.from_numpy(self.seq[np.sort(rows)].astype(np.int64)).to(self.device)

    def step(self) -> int:
        tc = self.cfg.train
        micro = [self._rows(rows) for rows in self.plan.indices(tc.seed, self.index)]
        self.index += 1
        step = self.index
        for batch in micro:
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = self.runner(input_ids=batch, labels=batch).loss / len(micro)
            loss.backward()
        if self.first_loss is None:
            self.first_loss = loss.detach() * len(micro)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        last = step == self.last
        if step % tc.log_every == 0 or last:
            loss.item()  # what a loop reads to print its loss
        if step % tc.eval_every == 0 or last:
            self.model.eval()
            with torch.no_grad():
                rows = self.val[: tc.eval_batches * tc.batch_size]
                for i in range(0, len(rows), tc.batch_size):
                    batch = torch.from_numpy(rows[i : i + tc.batch_size].astype(np.int64)).to(self.device)
                    with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                        self.model(input_ids=batch, labels=batch).loss.item()
            self.model.train()
        if step % tc.checkpoint_every == 0 or last:
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, self.path)
        return step


def memory_after(build, warmup: int, device: torch.device) -> tuple[object, float]:
    """Build one loop and run its warm-up steps alone; its peak memory is read then, because once both loops
    are live the device's peak counter cannot tell them apart (a CPU has only the process's peak RSS)."""
    from pipeline.train.runtime import Runtime, peak_memory_gib

    gc.collect()
    base = 0
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    loop = build()
    for _ in range(warmup):
        loop.step()
    Runtime(device).synchronize()
    gib = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else peak_memory_gib(device)
    return loop, gib


def run_interleaved(loops: dict, steps: int, device: torch.device, seed: int = 0) -> dict:
    """Step times per loop, taking turns; the order within each pair is drawn at random (seeded) so a
    position effect (caches warmed by the step before) cancels out over the pairs."""
    from pipeline.train.runtime import Runtime

    sync = Runtime(device).synchronize
    names = list(loops)
    times, done = {name: [] for name in names}, {name: [] for name in names}
    first = np.random.default_rng(seed).integers(0, 2, size=steps)
    for i in range(steps):
        for name in names if first[i] == 0 else names[::-1]:
            sync()
            t0 = time.perf_counter()
            done[name].append(loops[name].step())
            sync()
            times[name].append(time.perf_counter() - t0)
    assert done[names[0]] == done[names[1]], "the loops went out of step"
    return {"times": times, "steps": done[names[0]]}


def loop_summary(times: list[float], tokens_per_step: int, fpt: int, peaks: dict, memory: float) -> dict:
    from pipeline.train.flops import achieved_flops, mfu

    total = sum(times)
    achieved = achieved_flops(fpt, tokens_per_step * len(times) / total)
    return {
        "steps": len(times),
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step * len(times) / total,
        "step_time_mean_s": total / len(times),
        "step_time_median_s": statistics.median(times),
        "step_time_p10_s": float(np.percentile(times, 10)),
        "step_time_p90_s": float(np.percentile(times, 90)),
        "achieved_flops_per_s": achieved,
        "mfu_measured_peak": mfu(achieved, peaks["measured"]["flops_per_s"]),
        "mfu_datasheet_peak": mfu(achieved, peaks["datasheet_flops_per_s"]),
        "peak_memory_gib": memory,
        "step_times_s": times,
    }


def by_kind(kinds: list[str], pipe: list[float], bare: list[float]) -> dict:
    out = {}
    for kind in ("train", "log", "validation", "checkpoint"):
        sel = [i for i, k in enumerate(kinds) if k == kind]
        if sel:
            p, b = [pipe[i] for i in sel], [bare[i] for i in sel]
            out[kind] = {"steps": len(sel), "pipeline_mean_s": statistics.fmean(p), "bare_mean_s": statistics.fmean(b),
                         **({"paired": paired_overhead(p, b)} if len(sel) > 1 else {})}  # fmt: skip
    return out


def print_table(r: dict) -> None:
    def pct(x):
        return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.2f}%"

    print(f"{'loop':<10}{'tokens/s':>12}{'mean ms':>10}{'median ms':>11}{'p10-p90 ms':>16}{'MFU meas.':>11}"
          f"{'peak GiB':>10}")  # fmt: skip
    for name in ("pipeline", "bare"):
        x = r[name]
        spread = f"{1e3 * x['step_time_p10_s']:.1f}-{1e3 * x['step_time_p90_s']:.1f}"
        mfu = "n/a" if x["mfu_measured_peak"] is None else f"{100 * x['mfu_measured_peak']:.1f}%"
        print(f"{name:<10}{x['tokens_per_s']:>12,.0f}{1e3 * x['step_time_mean_s']:>10.2f}"
              f"{1e3 * x['step_time_median_s']:>11.2f}{spread:>16}{mfu:>11}{x['peak_memory_gib']:>10.2f}")  # fmt: skip
    conf = f"{100 * r['overhead']['confidence']:.0f}%"
    print(f"\n{'overhead of the pipeline over the bare loop':<44}{'estimate':>10}{conf + ' CI':>22}{'pairs':>7}")
    rows = [("paired (mean log-ratio, t), all steps", r["overhead"]),
            ("total time (bootstrap), all steps", r["overhead_total"])]  # fmt: skip
    rows += [(f"paired, {k} steps ({v['pipeline_mean_s'] * 1e3:.1f} vs {v['bare_mean_s'] * 1e3:.1f} ms)", v["paired"])
             for k, v in r["by_kind"].items() if "paired" in v]  # fmt: skip
    for label, o in rows:
        ci = f"{pct(o['ci_low'])} .. {pct(o['ci_high'])}"
        print(f"{label:<44}{pct(o['overhead']):>10}{ci:>22}{o['pairs']:>7}")
    print(f"goal <= +3.00% (paired, all steps): {'met' if r['overhead']['ci_high'] <= 0.03 else 'NOT met'} "
          f"(upper CI bound {pct(r['overhead']['ci_high'])})")  # fmt: skip
    peak, sheet = r["peak"]["measured"], r["peak"]["datasheet_flops_per_s"]
    print(f"peak: measured {peak['flops_per_s'] / 1e12:.2f} TFLOP/s ({peak['dtype']}, n={peak['n']}) on "
          f"{peak['name']}; datasheet {f'{sheet / 1e12:.1f} TFLOP/s' if sheet else 'none'}")  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="debug_3")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="default: on for cuda, off for cpu")
    p.add_argument("--steps", type=int, default=200, help="measured pairs of steps (>= 2)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per loop, >= 1 (compilation happens here)")
    p.add_argument("--set", action="append", default=[], help="more overrides, e.g. train.log_every=1")
    p.add_argument("--prepared-from", type=Path, help="a run directory whose prepared/ to copy instead of preparing")
    p.add_argument("--peak-seconds", type=float, help="matmul peak measurement time (default 3 s GPU, 1 s CPU)")
    p.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's; 1 is steadier on a shared VM)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.steps < 2 or args.warmup < 1:
        p.error("--steps must be >= 2 and --warmup >= 1 (the first step compiles and allocates optimizer state)")
    from pipeline.errors import UserError

    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(args) -> dict:
    from pipeline.evaluate.scoring import DTYPES
    from pipeline.model import parameter_counts
    from pipeline.train.peak import datasheet_peak, device_name, measure_matmul_peak
    from pipeline.train.runtime import Runtime, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device == "cuda"
    precision = args.precision or ("bf16" if gpu else "fp32")
    compile_ = gpu if args.compile is None else args.compile
    cfg = experiment(args.shape, args.device, precision, compile_, args.warmup + args.steps, args.set)
    rt = Runtime(pick_device(args.device))
    name = device_name(rt.device)
    # A GPU's peak is measured in the training dtype; a CPU's in fp32 (its bf16 is mostly emulated, a peak
    # far below what autocast reaches). The datasheet peak is a bf16 tensor-core figure: none for fp32 or CPU.
    peaks = {
        "measured": measure_matmul_peak(rt.device, DTYPES[precision] if gpu else None, args.peak_seconds),
        "datasheet_flops_per_s": datasheet_peak(name) if gpu and precision == "bf16" else None,
    }
    with tempfile.TemporaryDirectory(prefix="labnote-bench-train-") as tmp:
        work = Path(tmp)
        run_dir = prepare_run(cfg, work, args.prepared_from)
        peak = {
            "flops_per_s": peaks["measured"]["flops_per_s"],
            "datasheet_flops_per_s": peaks["datasheet_flops_per_s"],
        }
        pipe_loop, pipe_mem = memory_after(lambda: PipelineLoop(cfg, run_dir, rt, peak), args.warmup, rt.device)
        trainer = pipe_loop.trainer
        bare_loop, bare_mem = memory_after(lambda: BareLoop(cfg, pipe_loop, work), args.warmup, rt.device)
        measured = run_interleaved({"pipeline": pipe_loop, "bare": bare_loop}, args.steps, rt.device)
        step1 = [r["loss"] for r in _rows(trainer.metrics.path) if r["step"] == 1]
        counts = parameter_counts(trainer.model)
        tokens = trainer.tokens_per_step
    times, steps = measured["times"], measured["steps"]
    kinds = step_kinds(steps, cfg.train)
    record = {
        "benchmark": "train_throughput",
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": str(rt.device),
        "device_name": name,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "shape_name": args.shape,
        "shape": {"dim": cfg.model.dim, "layers": cfg.model.layers, "heads": cfg.model.heads,
                  "seq_len": cfg.seq_len, "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum},
        "intervals": {k: getattr(cfg.train, k) for k in ("log_every", "eval_every", "checkpoint_every")},
        "precision": precision,
        "compile": compile_,
        "vocab_size": trainer.model.config.vocab_size,
        "parameters": counts,
        "flops_per_token": trainer.flops_per_token,
        "peak": peaks,
        "warmup": args.warmup,
        "measured_steps": steps,
        "step_kinds": kinds,
        "pipeline": loop_summary(times["pipeline"], tokens, trainer.flops_per_token, peaks, pipe_mem),
        "bare": loop_summary(times["bare"], tokens, trainer.flops_per_token, peaks, bare_mem),
        # Step 1's loss of both loops (the pipeline logs it when train.log_every=1): the same weights and batch.
        "first_step_loss": {"pipeline": step1[0] if step1 else None, "bare": bare_loop.first_loss.item()},
        "overhead": paired_overhead(times["pipeline"], times["bare"]),
        "overhead_total": total_overhead(times["pipeline"], times["bare"]),
        "by_kind": by_kind(kinds, times["pipeline"], times["bare"]),
        "memory_kind": "cuda_max_allocated" if gpu else "cpu_process_peak_rss",
    }  # fmt: skip
    print_table(record)
    if args.out:
        from pipeline.atomic import write_json

        write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
