"""Collect benchmarks/gpu_check.sh's parts into one JSON (`gpu_check.json`) and print one table.

Expectations on a GPU (`ok` false is a finding, not a crash): bf16's peak memory below fp32's, QLoRA's below
LoRA's, the compile + bf16 smoke run completed with a finite, falling loss. On CPU (--device cpu, the dry run)
the memory expectations are reported but not asserted: a process's RSS says little about bf16 or 4-bit weights.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _mem(sweep: dict, name: str) -> float | None:
    v = ((sweep or {}).get("variants") or {}).get(name) or {}
    return v.get("mem_peak_allocated_gib") if v.get("status") == "ok" else None


def _less(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a < b


def collect(out: Path, device: str, seconds: float | None) -> dict:
    train, harness, sweep = _load(out / "train.json"), _load(out / "eval.json"), _load(out / "sweep.json")
    done, metrics, env = (
        _load(out / "smoke_done.json"),
        _lines(out / "smoke_metrics.jsonl"),
        _load(out / "environment.json"),
    )
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), (int, float))]
    gpus = ((env or {}).get("device") or {}).get("gpus") or []
    mem = {k: _mem(sweep, k) for k in ("fp32", "bf16", "lora-bf16", "qlora-bf16")}
    expectations = {
        "bf16_below_fp32_peak_memory": _less(mem["bf16"], mem["fp32"]),
        "qlora_below_lora_peak_memory": _less(mem["qlora-bf16"], mem["lora-bf16"]),
        "smoke_completed": (done or {}).get("status") == "completed",
        "smoke_loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
    }
    return {
        "device": device,
        "gpu": gpus[0]["name"] if gpus else None,
        "environment": env,
        "seconds": seconds,
        "bench_train": train
        and {
            "shape": train["shape_name"],
            "precision": train["precision"],
            "compile": train["compile"],
            "tokens_per_s": train["pipeline"]["tokens_per_s"],
            "bare_tokens_per_s": train["bare"]["tokens_per_s"],
            "mfu_measured_peak": train["pipeline"]["mfu_measured_peak"],
            "mfu_datasheet_peak": train["pipeline"]["mfu_datasheet_peak"],
            "measured_peak_flops_per_s": train["peak"]["measured"]["flops_per_s"],
            "peak_memory_gib": train["pipeline"]["peak_memory_gib"],
            "overhead_vs_bare": train["overhead"]["overhead"],
            "overhead_ci95": [train["overhead"]["ci_low"], train["overhead"]["ci_high"]],
        },  # fmt: skip
        "bench_eval": harness
        and {
            "scale": harness["scale"],
            "items": harness["items"],
            "total_s": harness["total_s"],
            "requests": harness["requests"],
        },  # fmt: skip
        "sweep": sweep
        and {
            name: {
                k: v.get(k)
                for k in (
                    "status",
                    "ok",
                    "repeats",
                    "step_time_median_s",
                    "tokens_per_s",
                    "mem_peak_allocated_gib",
                    "energy_j",
                )
            }
            for name, v in (sweep.get("variants") or {}).items()
        },  # fmt: skip
        "smoke": done
        and {
            "status": done.get("status"),
            "steps": done.get("steps_done"),
            "device": done.get("device"),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "tokens_per_s": metrics[-1].get("tokens_per_s") if metrics else None,
            "energy_j": done.get("energy_j"),
        },  # fmt: skip
        "expectations": expectations,
    }


def fmt(x, spec: str = ",.1f") -> str:
    return "—" if x is None else format(x, spec)


def table(r: dict) -> str:
    bt, be, sm = r["bench_train"] or {}, r["bench_eval"] or {}, r["smoke"] or {}
    tps, bare = fmt(bt.get("tokens_per_s"), ",.0f"), fmt(bt.get("bare_tokens_per_s"), ",.0f")
    mfu = f"{fmt(bt.get('mfu_measured_peak'), '.1%')} / {fmt(bt.get('mfu_datasheet_peak'), '.1%')}"
    items = sum((be.get("items") or {}).values())
    rows = [
        ("device", f"{r['device']} {r['gpu'] or ''}".strip()),
        ("bench-train tokens/s (bare)", f"{tps} ({bare})"),
        ("bench-train MFU measured / datasheet", mfu),
        (
            "bench-train overhead vs bare (95% CI)",
            f"{fmt(bt.get('overhead_vs_bare'), '+.1%')} "
            f"({' .. '.join(fmt(x, '+.1%') for x in bt.get('overhead_ci95') or [None, None])})",
        ),
        ("bench-eval total s (items)", f"{fmt(be.get('total_s'))} ({items:,})"),
    ]
    for name, v in (r["sweep"] or {}).items():
        step = fmt((v["step_time_median_s"] or 0) * 1e3)
        rows.append(
            (f"sweep {name}: step, peak", f"{step} ms, {fmt(v['mem_peak_allocated_gib'], '.3f')} GiB ({v['status']})")
        )
    loss = f"{fmt(sm.get('first_loss'), '.3f')} -> {fmt(sm.get('last_loss'), '.3f')} ({sm.get('status')})"
    rows.append(("smoke compile+bf16: loss first -> last", loss))
    rows += [(f"expect {k}", {True: "yes", False: "NO", None: "n/a"}[v]) for k, v in r["expectations"].items()]
    rows.append(("wall time s", fmt(r["seconds"], ",.0f")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float)
    args = p.parse_args()
    result = collect(args.out, args.device, args.seconds)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    print(f"results: {args.out / 'gpu_check.json'}")
    if args.device == "cuda" and not all(v is not False for v in result["expectations"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
