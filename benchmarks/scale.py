"""Time and peak memory of each stage part at growing input sizes, and the growth exponent of each.

Every part (`PARTS` below) is one row: a generator that builds a synthetic input of a given size in a scratch
directory (untimed), and a call of the part's current public entry point on it. Each measurement runs in its
own Python process, so the peak resident set size it reports is that part's alone (with the interpreter and
imports it needs, given as `base MiB`). The growth exponent is the slope of log(time) against log(size)
(least squares): 1 is linear, 2 quadratic.

    python benchmarks/scale.py                      # --quick sizes: a few minutes on 2 cores
    python benchmarks/scale.py --full               # the issue's sizes (10M-1B tokens, 1M log lines, ...)
    python benchmarks/scale.py --parts report,index --sizes 10000,100000

Another part's generator replaces its `make` function in `PARTS` (one edit each); results go into
benchmarks/README.md with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tests/import_fixtures.py: the importers' source layouts

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their has been its more when who will no if out so said what up about into "
    "than them can only other new some could time these two may then do first any my now such like our over man me "
    "even most made after also did many before must through back years where much your way well down should because"
)
WORDS = _WORDS.split()


# ---------------------------------------------------------------------------- synthetic inputs (untimed)
def text_bytes(n: int, seed: int = 0) -> str:
    """About `n` characters of English-looking words in paragraphs (one document per blank-line block)."""
    rng = random.Random(seed)
    block = []
    while sum(map(len, block)) < min(n, 1 << 20):  # a 1 MiB block of paragraphs, repeated
        block.append(" ".join(rng.choices(WORDS, k=rng.randint(40, 200))) + ".\n\n")
    one = "".join(block)
    return (one * (n // len(one) + 1))[:n]


def make_prepare(tokens: int, work: Path) -> dict:
    """An experiment on local text files of `tokens` bytes (byte tokenizer: one token per byte), resolved."""
    data = work / "data"
    data.mkdir(parents=True)
    for split, share in (("train", 0.9), ("validation", 0.05), ("test", 0.05)):
        (data / f"{split}.txt").write_text(text_bytes(int(tokens * share), seed=len(split)), encoding="utf-8")
    body = {
        "model": {"arch": "llama", "dim": 32, "layers": 1, "heads": 2, "max_seq_len": 128},
        "data": {"source": {"type": "files", **{s: [str(data / f"{s}.txt")] for s in ("train", "validation", "test")}},
                 "tokenizer": {"type": "bytes"}, "seq_len": 128},
        "train": {"steps": 10, "batch_size": 4},
    }  # fmt: skip
    _write_experiment(work, "scale", body)
    _cli(work, "resolve", "scale")
    return {"cwd": str(work), "argv": ["prepare", "runs/scale"]}


def make_batch_plan(tokens: int, work: Path) -> dict:
    return {"sequences": tokens // 2048, "micro_batch": 32, "steps": 1000}


def make_lingua_source(entries: int, work: Path) -> Path:
    from import_fixtures import lingua_dump

    steps = [(10 * i, 5.0 / (1 + i) ** 0.1, 2.0, 3e-4, 4.7e5, 0.123, 620.0) for i in range(1, entries + 1)]
    return lingua_dump(work / "lingua", steps=steps, config_steps=10 * entries)


def make_report(lines: int, work: Path) -> dict:
    """An imported run (Lingua) whose train/metrics.jsonl has `lines` lines: the report of a long run."""
    src = make_lingua_source(lines, work)
    _cli(work, "import", str(src), "--from", "lingua", "--exp", "long")
    return {"cwd": str(work), "argv": ["report", "runs/long", "--out", "reports/long"]}


def make_index(runs: int, work: Path) -> dict:
    """`runs` copies of one imported run (1,000 log lines each) with their reports in place."""
    src = make_lingua_source(1000, work)
    _cli(work, "import", str(src), "--from", "lingua", "--exp", "run0000")
    _cli(work, "report", "runs/run0000", "--out", "reports/run0000")
    for i in range(1, runs):
        shutil.copytree(work / "runs" / "run0000", work / "runs" / f"run{i:04d}", symlinks=True)
        shutil.copytree(work / "reports" / "run0000", work / "reports" / f"run{i:04d}", symlinks=True)
    return {"cwd": str(work), "argv": ["index"]}


def make_import(fmt: str) -> Callable[[int, Path], dict]:
    def make(entries: int, work: Path) -> dict:
        if fmt == "lingua":
            src = make_lingua_source(entries, work)
        elif fmt == "hf-trainer":
            from import_fixtures import hf_output_dir

            src = hf_output_dir(work / "hf", max_steps=10 * entries, logged=10 * entries)
        elif fmt == "lightning":
            from import_fixtures import lightning_version

            src = lightning_version(work / "lightning", range(entries), val_every=50)
        elif fmt == "tensorboard":
            src = tensorboard_events(entries, work / "tb")
        return {"cwd": str(work), "argv": ["import", str(src), "--from", fmt, "--exp", "imported"]}

    return make


def tensorboard_events(entries: int, root: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(root)) as writer:
        for step in range(1, entries + 1):
            writer.add_scalar("train/loss", 5.0 / step**0.1, step)
    return root


def _write_experiment(work: Path, name: str, body: dict) -> None:
    import yaml

    (work / "experiments").mkdir(parents=True, exist_ok=True)
    (work / "experiments" / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")


def _cli(work: Path, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=work, env=_env(), check=True, capture_output=True)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


# ---------------------------------------------------------------------------- timed calls (in a child process)
def run_cli(spec: dict) -> None:
    """The part's own command (`python -m pipeline …`), called in-process in the scratch project."""
    from pipeline.cli import main

    os.chdir(spec["cwd"])
    rc = main(spec["argv"])
    if rc:
        raise SystemExit(f"pipeline {' '.join(spec['argv'])} exited {rc}")


def run_batch_plan(spec: dict) -> dict:
    """Mean time per step of `BatchPlan.indices` over `steps` steps of one epoch (its first step included)."""
    from pipeline.train.batches import BatchPlan

    plan = BatchPlan(spec["sequences"], spec["micro_batch"], 1)
    steps = min(spec["steps"], plan.steps_per_epoch)
    if steps < 1:
        raise SystemExit(f"{spec['sequences']} sequences do not fill one step of {spec['micro_batch']}")
    t0 = time.perf_counter()
    for step in range(steps):
        plan.indices(0, step)
    return {"per_step_s": (time.perf_counter() - t0) / steps, "steps": steps}


@dataclass(frozen=True)
class Part:
    unit: str
    quick: tuple[int, ...]
    full: tuple[int, ...]
    make: Callable[[int, Path], dict]
    warm: tuple[str, ...] = ()  # modules imported before the clock starts (the call's cost, not Python's)
    run: Callable[[dict], dict | None] = run_cli
    per_step: bool = False  # time is per training step, not per call


# One row per part: swapping in a faster generator, or another entry point, is one edit here.
IMPORT = ("pipeline.importers", "pipeline.importers.write")
ENTRIES = {"quick": (10_000, 30_000), "full": (10_000, 30_000, 100_000)}
PARTS: dict[str, Part] = {
    "prepare": Part("tokens", (1_000_000, 3_000_000, 10_000_000), (10_000_000, 100_000_000, 1_000_000_000),
                    make_prepare, warm=("pipeline.data.prepare", "transformers")),
    "batch_plan": Part("tokens (seq 2048)", (10**7, 10**8, 10**9, 10**10), (10**7, 10**8, 10**9, 10**10),
                       make_batch_plan, warm=("pipeline.train.batches",), run=run_batch_plan, per_step=True),
    "report": Part("log lines", (10_000, 30_000, 100_000), (10_000, 100_000, 1_000_000), make_report,
                   warm=("pipeline.report.render", "matplotlib.pyplot")),
    "index": Part("runs", (10, 30), (10, 30, 100), make_index, warm=("pipeline.report.index",)),
    "import_lingua": Part("entries", *ENTRIES.values(), make_import("lingua"), warm=IMPORT),
    "import_hf": Part("entries", *ENTRIES.values(), make_import("hf-trainer"), warm=IMPORT),
    "import_lightning": Part("entries", *ENTRIES.values(), make_import("lightning"), warm=IMPORT),
    "import_tensorboard": Part("entries", *ENTRIES.values(), make_import("tensorboard"),
                               warm=(*IMPORT, "tensorboard.backend.event_processing.event_accumulator")),
}  # fmt: skip


def child(part: str, spec_path: Path) -> None:
    """Measure one call: wall time and this process's peak RSS (and its RSS before the call: imports)."""
    import importlib

    for module in ("pipeline.cli", *PARTS[part].warm):
        importlib.import_module(module)
    spec = json.loads(spec_path.read_text())
    base = _rss_mib()
    t0 = time.perf_counter()
    extra = PARTS[part].run(spec) or {}
    seconds = time.perf_counter() - t0
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its
    # parent's peak whenever that was larger.
    peak = _status_kib("VmHWM") / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "base_rss_mib": base, **extra}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------------------- driver
def growth_exponent(sizes, seconds) -> float | None:
    """Slope of log(seconds) against log(size), least squares; None with fewer than two sizes."""
    import numpy as np

    pts = [(s, t) for s, t in zip(sizes, seconds, strict=True) if t and t > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def measure(name: str, size: int, keep: Path | None) -> dict:
    part = PARTS[name]
    work = Path(tempfile.mkdtemp(prefix=f"labnote-scale-{name}-", dir=keep))
    try:
        t0 = time.perf_counter()
        spec = part.make(size, work / "in")
        made = time.perf_counter() - t0
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, __file__, "--child", name, str(spec_path)], env=_env(),
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode:
            return {"part": name, "size": size, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        t = out.pop("per_step_s") if part.per_step else out["seconds"]
        return {"part": name, "size": size, "time_s": t, "generate_s": made, **out}
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def table(results: list[dict]) -> str:
    lines = ["| part | size | unit | time | peak RSS MiB (base) | growth exponent |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["part"] for r in results):
        rows = [r for r in results if r["part"] == name]
        ok = [r for r in rows if "error" not in r]
        k = growth_exponent([r["size"] for r in ok], [r["time_s"] for r in ok])
        for i, r in enumerate(rows):
            part = PARTS[name]
            if "error" in r:
                cell, mem = f"error: {r['error'][:60]}", "—"
            else:
                cell = f"{r['time_s'] * 1e3:.4f} ms/step" if part.per_step else f"{r['time_s']:.2f} s"
                mem = f"{r['peak_rss_mib']:,.0f} ({r['base_rss_mib']:,.0f})"
            exp = (f"{k:.2f}" if k is not None else "—") if i == 0 else ""
            lines.append(f"| {name} | {r['size']:,} | {part.unit} | {cell} | {mem} | {exp} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, a few minutes (the default)")
    mode.add_argument("--full", action="store_true", help="the issue's sizes (hours and GiBs on 2 cores)")
    p.add_argument("--parts", help=f"comma-separated, of: {', '.join(PARTS)} (default: all)")
    p.add_argument("--sizes", help="comma-separated sizes for every part chosen, instead of the mode's")
    p.add_argument("--max", type=float, help="skip sizes above this (e.g. --max 1e8)")
    p.add_argument("--keep", type=Path, help="keep the scratch inputs under this directory")
    p.add_argument("--out", type=Path, help="JSON of every measurement")
    p.add_argument("--child", nargs=2, metavar=("PART", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return []
    names = args.parts.split(",") if args.parts else list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        p.error(f"--parts: unknown {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    results = []
    for name in names:
        part = PARTS[name]
        sizes = (
            [int(float(s)) for s in args.sizes.split(",")] if args.sizes else (part.full if args.full else part.quick)
        )
        for size in sizes:
            if args.max is not None and size > args.max:
                continue
            r = measure(name, size, args.keep)
            results.append(r)
            shown = r.get("error") or f"{r['time_s']:.4g} s, peak {r['peak_rss_mib']:,.0f} MiB"
            print(f"{name} {size:,}: {shown}", file=sys.stderr, flush=True)
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
