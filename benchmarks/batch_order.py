"""Per-step cost of the train stage's batch order at the seed's dataset size (4.9M sequences of 2,048 tokens).

`BatchPlan.indices` used to draw the permutation of every sequence on every step (77–133 ms at 4.9M sequences on
this machine, as long as a whole H100 step); it now draws it once per epoch. This script times, at the debug_3
shape (batch 32, sequence 2,048, 10B tokens):

- **old**: the permutation drawn from `seed + epoch` on every step (what the old code did), a few steps;
- **indices**: `BatchPlan.indices` for consecutive steps (the first step of an epoch draws the permutation);
- **batch**: the whole per-step host path of `DeviceBatches`: indices, then the rows gathered from a
  memory-mapped `.npy` token file, as int64 tensors (`load_tokens(random_access=True)`, as the train stage;
  `--readahead` keeps the kernel's read-ahead, as before). The file is sparse (never written, reads as zeros), so the
  first pass faults each page in from the file system (holes: no disk reads); a second pass over the same steps
  finds them in the page cache.

    python benchmarks/batch_order.py                       # 4.9M sequences, 2,000 steps
    python benchmarks/batch_order.py --sequences 100000 --steps 200 --old-steps 2    # seconds (CI)

Prints a table and writes a JSON record (--out). Results go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.data.prepare import TokenWriter, load_tokens  # noqa: E402
from pipeline.train.batches import BatchPlan, DeviceBatches, as_sequences  # noqa: E402


def _ms(samples: list[float]) -> dict:
    s = sorted(samples)
    return {
        "median_ms": round(statistics.median(s) * 1e3, 4),
        "p99_ms": round(s[min(len(s) - 1, int(0.99 * len(s)))] * 1e3, 4),
        "max_ms": round(s[-1] * 1e3, 4),
        "mean_ms": round(statistics.fmean(s) * 1e3, 4),
    }


def sparse_token_file(path: Path, tokens: int) -> None:
    """A `.npy` of `tokens` uint16 zeros that takes no disk space: the header, then a hole."""
    with TokenWriter(path, np.uint16) as out:
        out.length = tokens  # the header says `tokens`; the data is the file's hole
        out.fh.truncate(out.data_offset + 2 * tokens)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=4_900_000, help="training sequences (seed: 10B / 2,048)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2000, help="consecutive steps timed for indices and batch")
    ap.add_argument("--old-steps", type=int, default=5, help="steps timed for the old per-step permutation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--readahead", action="store_true", help="map the file with the kernel's read-ahead")
    ap.add_argument("--out", type=Path, help="write the JSON record here")
    args = ap.parse_args(argv)

    plan = BatchPlan(args.sequences, args.batch_size, grad_accum=1)
    start = plan.steps_per_epoch - 1  # the last step of epoch 0, then epoch 1 from its first step
    old = []
    for step in range(start, start + args.old_steps):
        t0 = time.perf_counter()
        epoch, _ = divmod(step, plan.steps_per_epoch)
        np.random.default_rng(args.seed + epoch).permutation(plan.n_sequences)
        old.append(time.perf_counter() - t0)

    plan.epoch_order(args.seed, 0)  # epoch 0's draw is not part of the steps timed: epoch 1's first step is
    indices = []
    for step in range(start, start + args.steps):
        t0 = time.perf_counter()
        plan.indices(args.seed, step)
        indices.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "prepared").mkdir()
        sparse_token_file(root / "prepared" / "train.npy", args.sequences * args.seq_len)
        tokens = load_tokens(root, "train", random_access=not args.readahead)  # as the train stage maps them
        sequences = as_sequences(tokens, args.seq_len)
        assert len(sequences) == args.sequences
        fresh = BatchPlan(args.sequences, args.batch_size, grad_accum=1)
        loader = DeviceBatches(sequences, fresh, args.seed, torch.device("cpu"))
        fresh.epoch_order(args.seed, 0)
        batch = []
        for step in range(start, start + args.steps):
            t0 = time.perf_counter()
            tensors = loader._load(step)
            batch.append(time.perf_counter() - t0)
        cached = []  # the same steps again: their pages are in the page cache now
        for step in range(start, start + args.steps):
            t0 = time.perf_counter()
            loader._load(step)
            cached.append(time.perf_counter() - t0)
        assert tensors[0].shape == (args.batch_size, args.seq_len)

    first_of_epoch = indices[1]  # step `start + 1` is epoch 1's first: it draws the permutation
    record = {
        "sequences": args.sequences,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "steps_per_epoch": plan.steps_per_epoch,
        "steps": args.steps,
        "readahead": args.readahead,
        "old_per_step": _ms(old),
        "indices": _ms(indices),
        "indices_epoch_start_ms": round(first_of_epoch * 1e3, 3),
        "indices_within_epoch": _ms(indices[:1] + indices[2:]),
        "indices_amortised_ms": round(
            (first_of_epoch + statistics.fmean(indices[2:] or indices) * (plan.steps_per_epoch - 1))
            / plan.steps_per_epoch
            * 1e3,
            4,
        ),
        "batch": _ms(batch),
        "batch_cached": _ms(cached),
    }
    print(
        f"{args.sequences:,} sequences, batch {args.batch_size}, {plan.steps_per_epoch:,} steps/epoch\n"
        f"| path | median ms | p99 ms | max ms |\n|---|---|---|---|\n"
        f"| old: permutation every step | {record['old_per_step']['median_ms']} | {record['old_per_step']['p99_ms']}"
        f" | {record['old_per_step']['max_ms']} |\n"
        f"| indices (within an epoch) | {record['indices_within_epoch']['median_ms']}"
        f" | {record['indices_within_epoch']['p99_ms']} | {record['indices_within_epoch']['max_ms']} |\n"
        f"| indices, epoch's first step | {record['indices_epoch_start_ms']} | | |\n"
        f"| indices amortised over the epoch | {record['indices_amortised_ms']} | | |\n"
        f"| batch: indices + memmap gather + tensor | {record['batch']['median_ms']} | {record['batch']['p99_ms']}"
        f" | {record['batch']['max_ms']} |\n"
        f"| batch, pages already cached | {record['batch_cached']['median_ms']} | {record['batch_cached']['p99_ms']}"
        f" | {record['batch_cached']['max_ms']} |"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
