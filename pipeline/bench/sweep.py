"""Bench stage: every variant x repeat in its own fresh process -> `bench/results.jsonl`, `bench/summary.json`.

A variant that fails (an exception, an out-of-memory error, a crash, a timeout) is recorded with its error
and the sweep goes on; one that cannot run here (no GPU, a missing package) is recorded as skipped with
the reason.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline import jsonl, records
from pipeline.atomic import write_json, write_text
from pipeline.config.schema import BenchVariant, Experiment
from pipeline.rundir import RunDir

log = logging.getLogger(__name__)


def vocab_size(cfg: Experiment, run: RunDir) -> int:
    stats = records.PREPARED_STATS.read(run.root)
    if cfg.model.vocab_size:
        return cfg.model.vocab_size
    if stats.vocab_size:
        return stats.vocab_size
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(cfg.bench.pretrained).vocab_size


def run_one(run: RunDir, variant: BenchVariant, repeat: int, timeout_s: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "pipeline", "bench-variant", str(run.root), variant.name, str(repeat), str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": f"timed out after {timeout_s} s"}
        if out.is_file():
            return json.loads(out.read_text())
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"status": "failed", "error": f"exit code {proc.returncode}: {lines[-1] if lines else 'no output'}"}


def summarise(cfg: Experiment, rows: list[dict]) -> dict:
    bc = cfg.bench
    variants = {}
    for v in bc.expanded():
        mine = [r for r in rows if r["variant"] == v.name]
        ok = [r for r in mine if r["status"] == "ok"]
        entry = {
            "requested": bc.settings(v),
            "repeats": len(mine),
            "ok": len(ok),
            "status": "ok" if ok else (mine[0]["status"] if mine else "missing"),
            "errors": sorted({r.get("error") or r.get("reason") for r in mine if r["status"] != "ok"}),
        }
        if ok:

            def stat(key, ok=ok):
                vals = [r[key] for r in ok if r.get(key) is not None]
                if not vals:
                    return None, None
                return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

            for key in (
                "step_time_median_s",
                "tokens_per_s",
                "samples_per_s",
                "mem_peak_allocated_gib",
                "mem_peak_reserved_gib",
                "energy_j",
                "nvml_process_mem_gib",
            ):
                entry[key], entry[f"{key}_std"] = stat(key)
            entry["step_time_p90_s"] = max(r["step_time_p90_s"] for r in ok)
            entry["effective_batch"] = ok[0]["effective_batch"]
            entry["resolved"] = ok[0]["resolved"]
            entry["mismatches"] = sorted({m for r in ok for m in r["mismatches"]})
            entry["mem_kind"] = ok[0]["mem_kind"]
            mean, std = entry["step_time_median_s"], entry["step_time_median_s_std"]
            entry["spread_pct"] = 100 * std / mean if mean else None
        variants[v.name] = entry
    return {
        "workload": bc.workload,
        "fixed": bc.fixed.model_dump(),
        "seq_len": bc.seq_len,
        "prompt_len": bc.prompt_len,
        "new_tokens": bc.new_tokens,
        "steps": bc.steps,
        "warmup_steps": bc.warmup_steps,
        "repeats": bc.repeats,
        "baseline": bc.baseline or bc.expanded()[0].name,
        "variants": variants,
    }


def run_variant(cfg: Experiment, run: RunDir, variant: BenchVariant, on_row=None) -> list[dict]:
    """All repeats of one variant, each in a fresh process."""
    rows = []
    for repeat in range(cfg.bench.repeats):
        result = run_one(run, variant, repeat, cfg.bench.timeout_s)
        rows.append({"variant": variant.name, "repeat": repeat, **result})
        if on_row:
            on_row(rows)
        log.info(
            "bench %s #%d: %s",
            variant.name,
            repeat,
            result["status"]
            if result["status"] != "ok"
            else f"{result['tokens_per_s']:.0f} tokens/s, step {result['step_time_median_s'] * 1e3:.1f} ms",
        )
        if result["status"] == "skipped":
            break  # the reason will not change on the next repeat
    return rows


def finish(cfg: Experiment, out: Path, rows: list[dict]) -> Path:
    run_root = out.parent
    records.BENCH_RESULTS.write_rows(run_root, rows)
    records.BENCH_SUMMARY.write(run_root, summarise(cfg, rows))
    records.BENCH_DONE.write(run_root, {"variants": len(cfg.bench.expanded()), "rows": len(rows)})
    return out


def run_bench(cfg: Experiment, run_dir: Path) -> Path:
    run = RunDir(run_dir)
    out = run.root / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "DONE").unlink(missing_ok=True)
    rows: list[dict] = []
    for variant in cfg.bench.expanded():
        done = list(rows)
        rows += run_variant(
            cfg,
            run,
            variant,
            on_row=lambda mine, done=done: records.BENCH_RESULTS.write_rows(run.root, done + mine),
        )
    return finish(cfg, out, rows)


# --------------------------------------------------------------------------- job arrays
def part_path(run: RunDir, index: int) -> Path:
    return run.root / "bench" / "parts" / f"{index:04d}.jsonl"


def run_bench_part(cfg: Experiment, run_dir: Path, index: int) -> Path:
    """One array task: variant number `index` (all its repeats) -> bench/parts/<index>.jsonl."""
    run, variants = RunDir(run_dir), cfg.bench.expanded()
    if not 0 <= index < len(variants):
        from pipeline.errors import UserError

        raise UserError(f"bench-part: variant index {index} out of range 0..{len(variants) - 1}")
    rows = run_variant(cfg, run, variants[index])
    write_text(part_path(run, index), jsonl.text(rows))
    return part_path(run, index)


def collect_bench_parts(cfg: Experiment, run_dir: Path) -> Path:
    """After the array: merge the parts in variant order; a task that left no part is a failed variant."""
    run, rows = RunDir(run_dir), []
    for index, variant in enumerate(cfg.bench.expanded()):
        path = part_path(run, index)
        if path.is_file():
            rows += [obj for _, obj in jsonl.read_lenient(path, [], path.name, key="variant")]
        else:
            rows.append(
                {
                    "variant": variant.name,
                    "repeat": 0,
                    "status": "failed",
                    "error": f"array task {index} wrote no result (killed, timed out or never ran)",
                }
            )
    return finish(cfg, run.root / "bench", rows)


def run_variant_process(run_dir: Path, name: str, repeat: int, out: Path) -> None:
    """Entry point of the child process: measure one variant, write its JSON record."""
    from pipeline.bench.build import Skip
    from pipeline.bench.measure import measure
    from pipeline.config.resolve import load_resolved

    cfg = load_resolved(run_dir)
    variant = next(v for v in cfg.bench.expanded() if v.name == name)
    settings = cfg.bench.settings(variant)
    try:
        if os.environ.get("LABNOTE_FAULT_VARIANT") == name:  # test hook: a variant whose code raises
            raise RuntimeError("injected fault")
        result = {"status": "ok", **measure(cfg, settings, vocab_size(cfg, RunDir(run_dir)))}
    except Skip as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure of one variant is data, not a crash of the sweep
        kind = "out of memory" if "out of memory" in str(exc).lower() else type(exc).__name__
        result = {"status": "failed", "error": f"{kind}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    result["requested"] = settings
    write_json(out, result)
