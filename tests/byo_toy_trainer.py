"""A trainer of someone else's, for tests of `train.command` (stdlib only: starts in milliseconds).

    python tests/byo_toy_trainer.py --steps 40 --out runs/x/external [--crash-at 20] [--pause-at 12]

Writes <out>/metrics.jsonl (labnote's jsonl keys plus one of its own, `my_counter`), resumes after the last step
logged there, records each launch's argv in <out>/launches.txt and its pid in <out>/pid. --crash-at N exits 3
after logging step N; --pause-at N waits after logging step N until <out>/resume exists (tests act at that step).
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


def main() -> None:  # not at import: pytest's --doctest-modules imports every module under tests/
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--pause-at", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pid").write_text(str(os.getpid()))
    with open(args.out / "launches.txt", "a") as fh:
        fh.write(" ".join(sys.argv) + "\n")
    log = args.out / "metrics.jsonl"
    done = [json.loads(line)["step"] for line in log.read_text().splitlines()] if log.is_file() else []
    print(f"starting after step {max(done, default=0)}", flush=True)
    with open(log, "a") as fh:
        for step in range(max(done, default=0) + 1, args.steps + 1):
            row = {"step": step, "loss": 4.0 * math.exp(-step * args.lr / 4), "lr": args.lr, "my_counter": step % 3}
            if step % 10 == 0:
                row["val_loss"] = row["loss"] + 0.1
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            if step == args.crash_at:
                print(f"ValueError: loss exploded at step {step}", file=sys.stderr, flush=True)
                sys.exit(3)
            if step == args.pause_at:
                while not (args.out / "resume").exists():
                    time.sleep(0.02)
    print("done", flush=True)


if __name__ == "__main__":
    main()
