"""Hand-written runs for the importer tests, kept only where the real tool cannot make them here: Meta Lingua
(not pip-installable: its MetricLogger's metrics.jsonl, eval.py's results, its stdout step lines, as its
source writes them) and seed 000's numbers (Lingua debug_3 on one H100: 100 of 1000 steps logged, a 2.16e4 wps
warm-up step, memory at 20%, evaluation at chance), plus small HF/Lightning/lm-eval files that tests damage
line by line. Everything the HF Trainer, Lightning, TensorBoard, W&B and lm-eval can write themselves comes from
the tools in tests/real_tool_fixtures.py instead.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

# step, loss, grad norm, lr, wps, iter time (s), power (W): seed 000's table, its warm-up step first.
LINGUA_STEPS = [
    (10, 5.3926, 27.2, 1.35e-06, 2.16e4, 0.1232, 605.112),
    (20, 4.2992, 14.7, 2.85e-06, 4.71e5, 0.1236, 635.169),
    (30, 3.6278, 5.62, 4.35e-06, 4.68e5, 0.1238, 631.004),
    (40, 3.2732, 3.71, 5.85e-06, 4.74e5, 0.1229, 628.51),
    (50, 3.1718, 2.45, 7.35e-06, 4.42e5, 0.1231, 640.2),
    (60, 2.9438, 1.82, 8.85e-06, 4.93e5, 0.1227, 622.75),
    (70, 2.8726, 2.55, 1.03e-05, 4.69e5, 0.1234, 619.3),
    (80, 2.8176, 1.44, 1.18e-05, 4.88e5, 0.1230, 633.0),
    (90, 2.739, 2.78, 1.33e-05, 4.61e5, 0.1233, 612.4),
    (100, 2.706, 2.50, 1.49e-05, 4.77e5, 0.1229, 626.8),
]
FLOPS_PER_TOKEN = 7.43e8  # 6 * 96.5M non-embedding params + 12 * 8 * 1024 * 2048
TASKS = {  # task: (metric, value, stderr, n, choices)
    "piqa": ("acc", 0.5157780195865071, 0.011659621458436627, 1838, ["sol1", "sol2"]),
    "hellaswag": ("acc", 0.25721967735510853, 0.004362045541316734, 10042, None),
}


def lingua_config(steps: int = 1000) -> dict:
    return {
        "name": "debug_3",
        "dump_dir": "outputs/debug_3_2025-10-13",
        "seed": 777,
        "grad_acc_steps": 1,
        "steps": steps,
        "probe_freq": None,
        "data": {
            "root_dir": "data/shuffled",
            "sources": {"fineweb_edu_10bt": 0.7},
            "batch_size": 32,
            "seq_len": 2048,
            "tokenizer": {"name": "bytes"},
        },
        "optim": {"lr": 3e-4, "weight_decay": 0.1, "warmup": 2000, "lr_min_ratio": 1e-6, "clip": 1.0},
        "model": {"dim": 1024, "n_layers": 8, "n_heads": 8, "vocab_size": 260},
        "distributed": {"fsdp_type": "full_shard", "compile": True, "model_dtype": "bf16"},
        "checkpoint": {"dump": {"every": 100, "keep": 1}, "eval": {"every": 100, "keep": 1}},
        "logging": {"freq": 10, "wandb": None},
    }


def lingua_metric(step, loss, grad, lr, wps, it, power_w) -> dict:
    """One line of Lingua's metrics.jsonl (flatten_dict(sep="/") + MetricLogger's created_at)."""
    return {
        "global_step": step,
        "acc_step": 0,
        "speed/wps": wps,
        "speed/FLOPS": FLOPS_PER_TOKEN * wps,
        "speed/curr_iter_time": it,
        "speed/data_load_time": 0.0063,
        "optim/grad_norm": grad,
        "optim/lr": lr,
        "optim/total_tokens": step * 32 * 2048,
        "memory/max_active_gib": 18.62,
        "memory/max_active_pct": 20.0,
        "memory/max_reserved_gib": 22.5,
        "memory/max_reserved_pct": 24.17,
        "memory/num_alloc_retries": 0,
        "memory/num_ooms": 0,
        "memory/power_draw": power_w * 1000,
        "loss/out": loss,
        "created_at": f"2025-10-14T01:{10 + step // 10:02d}:00.000000+00:00",
    }


def lm_eval_result(step_note: str = "") -> dict:
    results = {t: {"alias": t, f"{m},none": v, f"{m}_stderr,none": se} for t, (m, v, se, _n, _c) in TASKS.items()}
    results["nq_open"] = {
        "alias": "nq_open",
        "exact_match,remove_whitespace": 0.0,
        "exact_match_stderr,remove_whitespace": 0.0,
    }
    configs = {
        t: {"task": t, "num_fewshot": 0, "output_type": "multiple_choice", "doc_to_choice": c if c else "{{endings}}"}
        for t, (_m, _v, _se, _n, c) in TASKS.items()
    }
    configs["nq_open"] = {"task": "nq_open", "num_fewshot": 5, "output_type": "generate_until"}
    n = {t: {"original": n, "effective": n} for t, (_m, _v, _se, n, _c) in TASKS.items()}
    n["nq_open"] = {"original": 3610, "effective": 3610}
    return {
        "results": results,
        "groups": {},
        "configs": configs,
        "versions": {"piqa": 1.0, "hellaswag": 1.0, "nq_open": 4.0},
        "n-shot": {"piqa": 0, "hellaswag": 0, "nq_open": 5},
        "higher_is_better": {"piqa": {"acc": True}, "hellaswag": {"acc": True}, "nq_open": {"exact_match": True}},
        "n-samples": n,
        "config": {
            "model": "hf",
            "model_args": "pretrained=outputs/debug_3/consolidated" + step_note,
            "batch_size": 1,
            "device": "cuda",
            "limit": None,
        },
        "git_hash": "a1b2c3d",
        "date": 1760405343.0,
        "transformers_version": "4.46.3",
        "lm_eval_version": "0.4.8",
        "total_evaluation_time_seconds": "1104.2",
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def lingua_dump(root: Path, steps=LINGUA_STEPS, config_steps: int = 1000) -> Path:
    """A Lingua dump_dir: config.yaml, metrics.jsonl, metrics.eval.jsonl and evals/<step>/results.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(lingua_config(config_steps)), encoding="utf-8")
    write_jsonl(root / "metrics.jsonl", [lingua_metric(*s) for s in steps])
    last = steps[-1][0]
    result = lm_eval_result()
    write_jsonl(
        root / "metrics.eval.jsonl", [{"created_at": "2025-10-14T01:29:03", "global_step": last, **result["results"]}]
    )
    out = root / "evals" / f"{last:010d}" / "results.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(result), encoding="utf-8")
    return root


def lingua_stdout(path: Path, steps=LINGUA_STEPS) -> Path:
    """The job's stdout: Lingua's logger prefix, then the step line exactly as train.py formats it."""
    lines = [
        "0: INFO    25-10-14 01:08:12.401231 - 0:00:03 - Starting job: debug_3",
        "0: INFO    25-10-14 01:08:20.117812 - 0:00:11 - Model size: 103,306,240 total parameters",
    ]
    for i, (step, loss, grad, lr, wps, it, power) in enumerate(steps):
        lines.append(
            f"0: INFO    25-10-14 01:{10 + i:02d}:00.000000 - 0:0{i}:00 - step: {step}  acc: 0"
            f"  loss: {round(loss, 4):>7}  grad: {grad:.2e}  flops: {FLOPS_PER_TOKEN * wps:.2e}"
            f"  wps: {wps:.2e}  iter: {it:>7}  data: {0.0063:>5}  lr: {lr:.2e}  mem: {20.0:.0f}%"
            f"  pow: {power} W"
        )
    lines.append("0: INFO    25-10-14 01:29:30.000000 - 0:21:18 - Saving to: outputs/debug_3/checkpoints/0000000100")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def hf_output_dir(root: Path, max_steps: int = 500, logged: int = 500, with_summary: bool = True) -> Path:
    """transformers' TrainerState JSON (indent=2, sort_keys=True) and a model config.json."""
    history = []
    for step in range(10, logged + 1, 10):
        history.append(
            {
                "epoch": round(step / 250, 4),
                "grad_norm": 1.5 + 40.0 / step,
                "learning_rate": 5e-05 * (1 - step / max_steps),
                "loss": round(4.0 * (10 / step) ** 0.3, 4),
                "step": step,
            }
        )
        if step % 100 == 0:
            history.append(
                {
                    "epoch": round(step / 250, 4),
                    "eval_loss": 3.9 * (10 / step) ** 0.25,
                    "eval_runtime": 12.3456,
                    "eval_samples_per_second": 81.002,
                    "eval_steps_per_second": 10.125,
                    "step": step,
                }
            )
    if with_summary:
        history.append(
            {
                "epoch": 2.0,
                "step": logged,
                "total_flos": 1.2345678e15,
                "train_loss": 2.1234567,
                "train_runtime": 812.3456,
                "train_samples_per_second": 19.696,
                "train_steps_per_second": 0.616,
            }
        )
    state = {
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": history[-1]["epoch"],
        "eval_steps": 100,
        "global_step": logged,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": history,
        "logging_steps": 10,
        "max_steps": max_steps,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 2,
        "save_steps": 500,
        "total_flos": 1.2345678e15,
        "train_batch_size": 8,
        "trial_name": None,
        "trial_params": None,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (root / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "n_embd": 768,
                "n_layer": 12,
                "n_head": 12,
                "n_positions": 1024,
                "vocab_size": 50257,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return root


def lightning_version(root: Path, steps: range, val_every: int = 50, hparams: dict | None = None) -> Path:
    """CSVLogger's metrics.csv: sparse rows (train rows, validation rows, epoch rows), plus hparams.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    header = ["epoch", "grad_2.0_norm_total", "lr-AdamW", "step", "train_loss_epoch", "train_loss_step", "val_loss"]
    with open(root / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for step in steps:
            epoch = step // 100
            writer.writerow(
                [
                    epoch,
                    f"{0.8 + 10 / (step + 1):.6f}",
                    f"{1e-3 * (1 - step / 400):.8g}",
                    step,
                    "",
                    f"{3.5 * (10 / (step + 10)) ** 0.2:.6f}",
                    "",
                ]
            )
            if (step + 1) % val_every == 0:
                writer.writerow([epoch, "", "", step, "", "", f"{3.6 * (10 / (step + 10)) ** 0.18:.6f}"])
    (root / "hparams.yaml").write_text(yaml.safe_dump(hparams or {"lr": 1e-3, "batch_size": 16}), encoding="utf-8")
    return root
