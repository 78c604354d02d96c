"""A plain PyTorch training loop of the kind labs write themselves: a byte-level bigram model on the King James
Bible (the builtin data), logging one JSON object per line in labnote's metric keys (`train.logs: {from: jsonl}`).

    python -m examples.plain_pytorch.train --steps 40 --lr 3e-3 --out runs/byo_plain/external

It resumes from <out>/state.pt (saved every --save-every steps), appending to <out>/metrics.jsonl, so a rerun
after SIGTERM continues. --crash-at N raises after logging step N (the failed-report example); --pause-at N waits
after saving step N until <out>/resume exists (tests stop it there, at a known step).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from pipeline.data.sources import kjv_chapters


def batches(data: torch.Tensor, batch: int, seq: int, generator: torch.Generator):
    while True:
        start = torch.randint(0, len(data) - seq - 1, (batch,), generator=generator)
        rows = torch.stack([data[s : s + seq + 1] for s in start.tolist()])
        yield rows[:, :-1], rows[:, 1:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--pause-at", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    text = "\n\n".join(kjv_chapters()[:40]).encode("utf-8")
    data = torch.tensor(list(text), dtype=torch.long)
    split = int(len(data) * 0.95)
    train, val = data[:split], data[split:]
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Embedding(256, 32), torch.nn.Linear(32, 256))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    gen, step = torch.Generator().manual_seed(args.seed), 0
    state = args.out / "state.pt"
    if state.is_file():  # resume where the last launch saved
        saved = torch.load(state)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["gen"])
        step = saved["step"]
        print(f"resumed from step {step}", flush=True)
    log = open(args.out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (open for the whole loop)
    stream, batch, seq = batches(train, 8, 32, gen), 8, 32
    t0 = time.perf_counter()
    while step < args.steps:
        x, y = next(stream)
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        row = {
            "step": step,
            "loss": loss.item(),
            "lr": lr,
            "tokens": step * batch * seq,
            "tokens_per_s": batch * seq / max(time.perf_counter() - t0, 1e-9),
            "my_counter": step % 3,
        }
        t0 = time.perf_counter()
        if step % 10 == 0:
            with torch.no_grad():
                vx, vy = next(batches(val, 16, seq, torch.Generator().manual_seed(1)))
                row["val_loss"] = torch.nn.functional.cross_entropy(model(vx).flatten(0, 1), vy.flatten()).item()
        log.write(json.dumps(row) + "\n")
        log.flush()
        if step % args.save_every == 0 or step == args.steps:
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step}, state
            )
        if step == args.crash_at:
            raise RuntimeError(f"simulated crash at step {step}")
        if step == args.pause_at:
            while not (args.out / "resume").exists():
                time.sleep(0.05)
    print(f"done: {step} steps, last loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
