"""Time every importer at 10K and 100K entries: read the source, then write runs/<EXP>/ (`make bench-import`).

Each source is written by `benchmarks/synthetic_sources.py` (the tools' own writers where installed) into a
scratch directory, then imported as `make import` does (`pipeline.importers.read_source`, then `write_run` into
the scratch directory's runs/<EXP>/, train/metrics.jsonl included), in this process, timed with perf_counter:

    read s    the adapter: find, parse, map every record (`read_source`)
    write s   config validation, train/*.jsonl, import.json with every file's sha256 (`write_run`)
    cpu s     this process's CPU time for both (on a shared machine, wall time also counts others' load)
    µs/entry  (read + write) / entries: flat between sizes means linear

    .venv/bin/python benchmarks/import_scale.py                              # all sources, 10K and 100K
    .venv/bin/python benchmarks/import_scale.py --sizes 1000 --sources lingua --out /tmp/import.json

Writing the sources is not timed (W&B's and TensorBoard's own writers take longer than the import). Goal
(issue 17): 100K-entry HF, Lightning, Lingua and TensorBoard sources in <= 10 s each on a 2-core CPU.
Results go in benchmarks/README.md with the machine named.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_sources import WRITERS  # noqa: E402

GOAL_S = 10.0
GOAL_SOURCES = ("hf-trainer", "lightning", "lingua", "tensorboard")


def time_import(source: str, entries: int, scratch: Path) -> dict:
    """Write a source of `entries` entries (untimed), import it timed, delete both."""
    fmt, writer = WRITERS[source]
    src = writer(scratch / f"{source}-{entries}", entries)
    try:
        row = import_written(src, fmt, f"bench_{source}_{entries}", scratch)
        return {"source": source, "entries": entries, **row, "us_per_entry": round(1e6 * row["total_s"] / entries, 1)}
    finally:
        shutil.rmtree(scratch / f"{source}-{entries}", ignore_errors=True)


def import_written(src: Path, fmt: str, name: str, scratch: Path) -> dict:
    """`make import` of an already written source into scratch/runs/<name>/, timed (read, write, CPU), then
    deleted. `scale.py` calls this alone in a child process, so that its peak RSS is the import's, not the writer's."""
    from pipeline.importers import read_source
    from pipeline.importers.write import check_target, write_run

    name = name.replace("-", "_")
    cwd = os.getcwd()
    os.chdir(scratch)  # runs/ is relative: the import lands in scratch/runs/<name>/
    try:
        start, cpu = time.perf_counter(), time.process_time()
        check_target(name)
        imp = read_source(src, fmt)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        target = write_run(imp, name, "source" if imp.steps_planned else None)
        write_s = time.perf_counter() - start
        cpu_s = time.process_time() - cpu
        metrics = target / "train" / "metrics.jsonl"
        lines = metrics.read_bytes().count(b"\n") if metrics.is_file() else 0
    finally:
        os.chdir(cwd)
    shutil.rmtree(scratch / "runs" / name, ignore_errors=True)
    total = read_s + write_s
    return {
        "read_s": round(read_s, 3),
        "write_s": round(write_s, 3),
        "total_s": round(total, 3),
        "cpu_s": round(cpu_s, 3),
        "metrics_rows": len(imp.metrics),
        "metrics_lines_written": lines,
        "validation_rows": len(imp.validation),
        "extra_rows": len(imp.extra),
        "task_rows": len(imp.tasks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="entries per source")
    parser.add_argument("--sources", nargs="+", default=list(WRITERS), choices=list(WRITERS))
    parser.add_argument("--out", type=Path, help="write the records as JSON here")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="labnote-import-bench-") as tmp:
        for source in args.sources:
            for entries in args.sizes:
                row = time_import(source, entries, Path(tmp))
                rows.append(row)
                print(
                    f"{row['source']:<14} {row['entries']:>8,} entries  read {row['read_s']:7.2f} s  "
                    f"write {row['write_s']:6.2f} s  total {row['total_s']:7.2f} s  cpu {row['cpu_s']:7.2f} s  "
                    f"{row['us_per_entry']:7.1f} µs/entry  "
                    f"({row['metrics_rows']:,} metric rows)",
                    flush=True,
                )
    over = [r for r in rows if r["source"] in GOAL_SOURCES and r["entries"] >= 100_000 and r["total_s"] > GOAL_S]
    for r in over:
        print(f"over the goal: {r['source']} at {r['entries']:,} entries took {r['total_s']} s (> {GOAL_S} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "load": os.getloadavg()},
            "python": platform.python_version(),
            "rows": rows,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
