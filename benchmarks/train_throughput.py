"""Time the train stage's step: tokens/s, MFU, peak memory, and the pipeline's overhead over a bare loop.

Seed 000 trained a 103M byte-level Llama (dim 1024, 8 layers, 8 heads, seq 2048, batch 32, bf16,
torch.compile) at ~470K tokens/s on one H100. This script builds a model of that shape with random weights,
runs the pipeline's own `Trainer.train_step` on random token batches, and a bare PyTorch loop (forward,
backward, clip, AdamW, zero_grad) with the same initial weights, batches, precision and compile setting, in
the same process on the same device. Each loop warms up alone (its peak memory is read then); the measured
steps alternate between the two loops. Warm-up steps are discarded, the device is synchronised before every
clock read, and step times are medians. MFU uses `pipeline.train.flops` against the matmul peak measured here
once (`pipeline.train.peak`) and against the datasheet's dense BF16 peak.

    python benchmarks/train_throughput.py --device cuda                      # debug_3 shape, bf16, compile
    python benchmarks/train_throughput.py --shape tiny --device cpu          # CPU-sized, seconds on 2 cores

Prints a table and writes a JSON record (--out). Results go in benchmarks/README.md with the device named.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# debug_3 as experiments/debug_3.yaml has it: Lingua's SwiGLU width and untied output layer (seed 000's 103M).
SHAPES = {
    "debug_3": {
        "dim": 1024,
        "layers": 8,
        "heads": 8,
        "seq_len": 2048,
        "batch_size": 32,
        "ffn_dim": 2816,
        "tie_embeddings": False,
    },
    "tiny": {"dim": 64, "layers": 2, "heads": 4, "seq_len": 128, "batch_size": 4},
}


def experiment(shape: dict, device: str, precision: str, compile_: bool, steps: int):
    from pipeline.config.schema import Experiment

    return Experiment(
        name="bench_train",
        data={"source": {"type": "builtin", "name": "kjv"}, "seq_len": shape["seq_len"]},
        model={
            "arch": "llama",
            "dim": shape["dim"],
            "layers": shape["layers"],
            "heads": shape["heads"],
            "max_seq_len": shape["seq_len"],
            **{k: shape[k] for k in ("ffn_dim", "tie_embeddings") if k in shape},
        },
        train={
            "steps": steps,
            "batch_size": shape["batch_size"],
            "lr": 3e-4,
            "precision": precision,
            "compile": compile_,
            "device": device,
        },
    )


def pipeline_loop(cfg, rt, vocab: int, eos: int):
    """The real `Trainer.train_step`, on a Trainer built by its own constructor.

    `Trainer(cfg, rt, vocab, eos)` builds the model, optimizer, scheduler, scaler and (compiled) step
    model exactly as the train stage does; only `Trainer.from_run` would add a prepared run's tokenizer
    and token files, which a benchmark on random batches does not have. Timing the pipeline's own step
    (not a copy here that could drift from loop.py) keeps the benchmark measuring the right thing.
    """
    from pipeline.train.loop import Trainer

    trainer = Trainer(cfg, rt, vocab, eos)
    trainer.step_model.train()
    return lambda batch: trainer.train_step([batch])[0], trainer.model


def bare_loop(cfg, device: torch.device, vocab: int, eos: int):
    """What a hand-written training loop does per step, with none of the pipeline's machinery."""
    from pipeline.evaluate.scoring import DTYPES
    from pipeline.model import build_model
    from pipeline.train.runtime import seed_everything

    tc = cfg.train
    seed_everything(tc.seed)  # the same initial weights as the pipeline's model: the first losses must agree
    model = build_model(cfg.model, vocab, eos).to(device)
    runner = torch.compile(model) if tc.compile else model
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=device.type == "cuda"
    )
    runner.train()

    def step(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=DTYPES[tc.precision], enabled=tc.precision != "fp32"):
            loss = runner(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step, model


def warm_up(builder, batches: torch.Tensor, device: torch.device) -> dict:
    """Build one loop and run its untimed steps (compilation, optimizer state) with only it on the device.

    Its peak memory is read here, above what was allocated before it was built, because once both loops
    are live the device's peak counter can no longer tell them apart. (A CPU has no such counter: there
    it is the process's peak resident set size, the same for both loops.)
    """
    from pipeline.train.runtime import Runtime, peak_memory_gib

    gc.collect()
    base = 0
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    step, model = builder()
    losses = [step(batch) for batch in batches]
    Runtime(device).synchronize()
    memory = (
        (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else peak_memory_gib(device)
    )
    return {"step": step, "model": model, "losses": losses, "memory_gib": memory}


def run_interleaved(loops: dict, batches: torch.Tensor, device: torch.device) -> dict[str, list[float]]:
    """Step times per loop, the loops taking turns on each batch and alternating who goes first.

    Taking turns spreads clock, thermal and neighbour-load drift evenly over both loops, so their ratio
    (the pipeline's overhead) is not biased by which one ran first or later.
    """
    from pipeline.train.runtime import Runtime

    sync = Runtime(device).synchronize
    names, times = list(loops), {name: [] for name in loops}
    for i, batch in enumerate(batches):
        for name in names if i % 2 == 0 else names[::-1]:
            sync()
            t0 = time.perf_counter()
            loops[name]["losses"].append(loops[name]["step"](batch))
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def summarise(loop: dict, times: list[float], tokens_per_step: int, fpt: int, peaks: dict) -> dict:
    from pipeline.train.flops import achieved_flops, mfu

    median, losses = statistics.median(times), [loss.item() for loss in loop["losses"]]
    achieved = achieved_flops(fpt, tokens_per_step / median)
    return {
        "steps": len(times),
        "warmup": len(losses) - len(times),
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step / median,
        "step_time_median_s": median,
        "step_time_p10_s": float(np.percentile(times, 10)),
        "step_time_p90_s": float(np.percentile(times, 90)),
        "step_time_std_s": statistics.pstdev(times),
        "achieved_flops_per_s": achieved,
        "mfu_measured_peak": mfu(achieved, peaks["measured"]["flops_per_s"]),
        "mfu_datasheet_peak": mfu(achieved, peaks["datasheet_flops_per_s"]),
        "peak_memory_gib": loop["memory_gib"],
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "step_times_s": times,
    }


def print_table(record: dict) -> None:
    def pct(x):
        return f"{100 * x:.1f}%" if x is not None else "n/a"

    print(
        f"{'loop':<10}{'tokens/s':>12}{'step ms':>10}{'p10-p90 ms':>16}{'MFU meas.':>11}{'MFU sheet':>11}"
        f"{'peak GiB':>10}"
    )
    for name in ("pipeline", "bare"):
        r = record[name]
        spread = f"{1e3 * r['step_time_p10_s']:.1f}-{1e3 * r['step_time_p90_s']:.1f}"
        print(
            f"{name:<10}{r['tokens_per_s']:>12,.0f}{1e3 * r['step_time_median_s']:>10.1f}{spread:>16}"
            f"{pct(r['mfu_measured_peak']):>11}{pct(r['mfu_datasheet_peak']):>11}{r['peak_memory_gib']:>10.2f}"
        )
    peak, sheet = record["peak"]["measured"], record["peak"]["datasheet_flops_per_s"]
    print(f"overhead of the pipeline over the bare loop: {100 * record['overhead_vs_bare']:+.1f}%")
    print(
        f"peak: measured {peak['flops_per_s'] / 1e12:.2f} TFLOP/s ({peak['dtype']}, n={peak['n']}) on "
        f"{peak['name']}; datasheet {f'{sheet / 1e12:.1f} TFLOP/s' if sheet else 'none'}"
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="debug_3")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help="default: on for cuda, off for cpu")
    p.add_argument("--batch-size", type=int, help="default: the shape's")
    p.add_argument("--steps", type=int, default=20, help="measured steps per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per loop, >= 1 (compilation happens here)")
    p.add_argument("--peak-seconds", type=float, help="matmul peak measurement time (default 3 s GPU, 1 s CPU)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1 (the first step compiles and allocates optimizer state)")

    from pipeline.config.schema import ByteTokenizer
    from pipeline.data.tokenizer import build_tokenizer
    from pipeline.evaluate.scoring import DTYPES
    from pipeline.model import parameter_counts
    from pipeline.train.flops import flops_per_token
    from pipeline.train.peak import datasheet_peak, device_name, measure_matmul_peak
    from pipeline.train.runtime import Runtime, pick_device

    gpu = args.device == "cuda"
    precision = args.precision or ("bf16" if gpu else "fp32")
    compile_ = gpu if args.compile is None else args.compile
    shape = {**SHAPES[args.shape], **({"batch_size": args.batch_size} if args.batch_size else {})}
    cfg = experiment(shape, args.device, precision, compile_, args.warmup + args.steps)
    rt = Runtime(pick_device(args.device))
    tok = build_tokenizer(ByteTokenizer(type="bytes"), [])
    vocab, eos = len(tok), tok.eos_token_id
    name = device_name(rt.device)
    # A GPU's peak is measured in the training dtype; a CPU's in fp32 (its bf16 is mostly emulated, a peak
    # far below what autocast reaches). The datasheet peak is a bf16 tensor-core figure: none for fp32 or CPU.
    peaks = {
        "measured": measure_matmul_peak(rt.device, DTYPES[precision] if gpu else None, args.peak_seconds),
        "datasheet_flops_per_s": datasheet_peak(name) if gpu and precision == "bf16" else None,
    }
    gen = torch.Generator().manual_seed(0)
    batches = torch.randint(
        0, vocab, (args.warmup + args.steps, shape["batch_size"], shape["seq_len"]), generator=gen
    ).to(rt.device)
    warm, timed = batches[: args.warmup], batches[args.warmup :]
    loops = {
        "pipeline": warm_up(lambda: pipeline_loop(cfg, rt, vocab, eos), warm, rt.device),
        "bare": warm_up(lambda: bare_loop(cfg, rt.device, vocab, eos), warm, rt.device),
    }
    times = run_interleaved(loops, timed, rt.device)
    counts = parameter_counts(loops["pipeline"]["model"])
    fpt = flops_per_token(counts, shape["layers"], shape["dim"], shape["seq_len"])
    tokens = shape["batch_size"] * shape["seq_len"]
    pipe, bare = (summarise(loops[k], times[k], tokens, fpt, peaks) for k in ("pipeline", "bare"))
    record = {
        "benchmark": "train_throughput",
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": str(rt.device),
        "device_name": name,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "shape_name": args.shape,
        "shape": shape,
        "precision": precision,
        "compile": compile_,
        "vocab_size": vocab,
        "parameters": counts,
        "flops_per_token": fpt,
        "peak": peaks,
        "pipeline": pipe,
        "bare": bare,
        "overhead_vs_bare": pipe["step_time_median_s"] / bare["step_time_median_s"] - 1,
        "memory_kind": "cuda_max_allocated" if gpu else "cpu_process_peak_rss",
    }
    print_table(record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
