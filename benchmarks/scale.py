"""Time and peak memory of each stage part at growing input sizes, and the growth exponent of each.

Every part (`PARTS` below) is one row: a generator that builds a synthetic input of a given size in a scratch
directory (untimed), and a call of the part's current public entry point on it. Each measurement runs in its
own Python process, so the peak resident set size it reports is that part's alone (with the interpreter and
imports it needs, given as `base MiB`). The growth exponent is the slope of log(time) against log(size)
(least squares): 1 is linear, 2 quadratic.

    python benchmarks/scale.py                      # --quick sizes: a few minutes on 2 cores
    python benchmarks/scale.py --full               # the issue's sizes (10M-1B tokens, 1M log lines, ...)
    python benchmarks/scale.py --parts report,index --sizes 10000,100000

Inputs come from benchmarks/synthetic.py (run directories), synthetic_sources.py (other tools' runs) and a
word-paragraph text file, under the system temporary directory. `--readme benchmarks/README.md` rewrites the
measured parts' rows of its table and keeps the others', so one part can be rerun alone.
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
sys.path.insert(0, str(REPO / "benchmarks"))  # synthetic.py, synthetic_sources.py, import_scale.py

_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their has been its more when who will no if out so said what up about into "
    "than them can only other new some could time these two may then do first any my now such like our over man me "
    "even most made after also did many before must through back years where much your way well down should because"
)
WORDS = _WORDS.split()


# ---------------------------------------------------------------------------- synthetic inputs (untimed)
def write_text(path: Path, n: int, seed: int = 0) -> Path:
    """`n` bytes of English-looking words in paragraphs (one document per blank-line block), written 1 MiB block
    at a time: a 1B-token input need not fit in memory."""
    rng = random.Random(seed)
    block = []
    while sum(map(len, block)) < min(n, 1 << 20):
        block.append(" ".join(rng.choices(WORDS, k=rng.randint(40, 200))) + ".\n\n")
    one = "".join(block).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for _ in range(n // len(one)):
            fh.write(one)
        fh.write(one[: n % len(one)])
    return path


def make_prepare(tokens: int, work: Path) -> dict:
    """A text file of `tokens` bytes (byte tokenizer: one token per byte, EOS after each document)."""
    return {"text": str(write_text(work / "train.txt", tokens)), "out": str(work / "prepared")}


def make_batch_plan(tokens: int, work: Path) -> dict:
    return {"sequences": tokens // 2048, "micro_batch": 32, "steps": 1000}


def make_report(lines: int, work: Path) -> dict:
    """A finished native run of `lines` metric lines (benchmarks/synthetic.py): the report of a long run, whose
    train stage left the columnar cache of a long log (records.cache_logs)."""
    from synthetic import make_run

    make_run(work / "runs" / "long", lines)
    return {"cwd": str(work), "argv": ["report", "runs/long", "--out", "reports/long"]}


def make_report_uncached(lines: int, work: Path) -> dict:
    """The same run without the cache (a run from before it, or `rm -r runs/<EXP>/.cache`): the report parses
    every line and writes the cache."""
    from pipeline import records

    spec = make_report(lines, work)
    shutil.rmtree(records.FRAME_CACHE.at(work / "runs" / "long"), ignore_errors=True)
    return spec


INDEX_RUN_LINES = 1_000


def make_index(runs: int, work: Path) -> dict:
    """`runs` finished runs of INDEX_RUN_LINES lines (every tenth compared to the first), each report rendered
    (so each summary.json is current): the timed index reads summaries, not logs."""
    from synthetic import make_run

    from pipeline.config.resolve import load_resolved
    from pipeline.report.render import run_report

    for i in range(runs):
        run_dir = make_run(work / "runs" / f"r{i:04d}", INDEX_RUN_LINES, validations=20,
                           compare_to="r0000" if i % 10 == 1 else None)  # fmt: skip
        run_report(load_resolved(run_dir), run_dir, work / "reports" / run_dir.name)
    return {"cwd": str(work), "argv": ["index"]}


def make_import(source: str) -> Callable[[int, Path], dict]:
    def make(entries: int, work: Path) -> dict:
        from synthetic_sources import WRITERS

        fmt, writer = WRITERS[source]
        src = writer(work / source, entries)
        return {"src": str(src), "fmt": fmt, "name": f"bench_{source}", "scratch": str(work)}

    return make


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


def run_prepare(spec: dict) -> dict:
    """`prepare_text_file` with the byte tokenizer (built before the clock starts: milliseconds, no training)."""
    from pipeline.config.schema import ByteTokenizer
    from pipeline.data.prepare import prepare_text_file
    from pipeline.data.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(ByteTokenizer(type="bytes"), [])
    t0 = time.perf_counter()
    stats = prepare_text_file(Path(spec["text"]), tokenizer, Path(spec["out"]), split="train")
    seconds = time.perf_counter() - t0
    return {"time_s": seconds, "tokens": stats["tokens"], "mb_per_s": stats["bytes"] / 1e6 / seconds}


def run_import(spec: dict) -> dict:
    """`make import` of the written source, in-process (`import_scale.import_written`: read_source + write_run)."""
    from import_scale import import_written

    row = import_written(Path(spec["src"]), spec["fmt"], spec["name"], Path(spec["scratch"]))
    return {"time_s": row["total_s"], "cpu_s": row["cpu_s"], "metrics_rows": row["metrics_rows"]}


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
IMPORT = ("pipeline.importers", "pipeline.importers.write", "import_scale")
ENTRIES = {"quick": (3_000, 10_000), "full": (10_000, 100_000)}
REPORT = ("pipeline.report.render", "matplotlib.pyplot")
PARTS: dict[str, Part] = {
    "prepare": Part("tokens", (1_000_000, 10_000_000), (10_000_000, 100_000_000, 1_000_000_000),
                    make_prepare, warm=("pipeline.data.prepare", "pipeline.data.tokenizer", "transformers"),
                    run=run_prepare),
    "batch_plan": Part("tokens (seq 2048)", (10**7, 10**8, 10**9, 10**10), (10**7, 10**8, 10**9, 10**10),
                       make_batch_plan, warm=("pipeline.train.batches",), run=run_batch_plan, per_step=True),
    "report": Part("log lines", (10_000, 100_000), (10_000, 100_000, 1_000_000), make_report, warm=REPORT),
    "report_uncached": Part("log lines", (10_000, 100_000), (10_000, 100_000, 1_000_000), make_report_uncached,
                            warm=REPORT),
    "index": Part("runs", (3, 10), (10, 100), make_index, warm=("pipeline.report.index",)),
    "import_lingua": Part("entries", *ENTRIES.values(), make_import("lingua"), warm=IMPORT, run=run_import),
    "import_hf": Part("entries", *ENTRIES.values(), make_import("hf-trainer"), warm=IMPORT, run=run_import),
    "import_lightning": Part("entries", *ENTRIES.values(), make_import("lightning"), warm=IMPORT, run=run_import),
    "import_tensorboard": Part("entries", *ENTRIES.values(), make_import("tensorboard"), run=run_import,
                               warm=(*IMPORT, "pipeline.importers.tensorboard")),
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
    seconds = extra.pop("time_s", time.perf_counter() - t0)  # a part that times its own call, setup left out
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


# Issue #17's figures before its work (same VM), shown beside the row they compare with: (part, size) or part.
BEFORE = {
    ("report", 1_000_000): "35 s / 3.0 GiB",
    ("report_uncached", 1_000_000): "35 s / 3.0 GiB",
    ("import_hf", 10_000): "3.4 s",
    ("import_hf", 100_000): "349 s (20K: 13.7 s, 40K: 54 s)",
    ("batch_plan", 10**10): "77–133 ms/step",
    ("index", 10): "13 runs: 21 s / 3 GiB",
    "prepare": "1.2–1.7 MB/s",
}
HEADER = ["| part | size | unit | time | peak RSS MiB (base) | growth exponent | before (issue #17) |",
          "|---|---|---|---|---|---|---|"]  # fmt: skip


def table_rows(results: list[dict]) -> list[str]:
    lines = []
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
                if "mb_per_s" in r:
                    cell += f" ({r['mb_per_s']:.1f} MB/s)"
                if "cpu_s" in r:
                    cell += f" (CPU {r['cpu_s']:.2f} s)"
                mem = f"{r['peak_rss_mib']:,.0f} ({r['base_rss_mib']:,.0f})"
            exp = (f"{k:.2f}" if k is not None else "—") if i == 0 else ""
            before = BEFORE.get((name, r["size"])) or (BEFORE.get(name, "") if i == 0 else "")
            lines.append(f"| {name} | {r['size']:,} | {part.unit} | {cell} | {mem} | {exp} | {before} |")
    return lines


def table(results: list[dict]) -> str:
    return "\n".join([*HEADER, *table_rows(results)])


BEGIN, END = "<!-- scale.py table: begin -->", "<!-- scale.py table: end -->"


def update_readme(path: Path, results: list[dict]) -> None:
    """Replace, in the table between BEGIN and END of `path`, the rows of the parts measured now; the other parts'
    rows stay (so `--parts report,index --readme …` reruns two parts alone). Rows are kept in PARTS order."""
    from pipeline.atomic import write_text

    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} … {END} markers to write the table between")
    head, rest = text.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    measured = {r["part"] for r in results}
    rows: dict[str, list[str]] = {name: [] for name in PARTS}
    for line in old.strip().splitlines()[len(HEADER) :]:
        name = line.split("|")[1].strip()
        if name in rows and name not in measured:
            rows[name].append(line)
    for line in table_rows(results):
        rows[line.split("|")[1].strip()].append(line)
    body = "\n".join([*HEADER, *(line for name in PARTS for line in rows[name])])
    write_text(path, f"{head}{BEGIN}\n{body}\n{END}{tail}")


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
    p.add_argument("--readme", type=Path, help="update these parts' rows of the table in this markdown file")
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
    if args.readme:
        update_readme(args.readme, results)
    return results


if __name__ == "__main__":
    main()
