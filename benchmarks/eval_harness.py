"""Time the eval stage's lm-evaluation-harness path on tasks shaped like seed 000's.

Seed 000 evaluated a 103M byte-level model (dim 1024, 8 layers, 8 heads, seq 2048) on hellaswag
(10,042 4-way items), piqa (1,838 2-way items) and nq_open (3,610 5-shot generations stopping at newline)
and took 18.4 min, 17.5 of them in generate_until run at batch size 1. This script builds local tasks
with the same item counts, choice counts and text lengths (synthetic text from the King James Bible, so it
runs offline), then runs them through `pipeline.evaluate.harness` exactly as the eval stage does.

    python benchmarks/eval_harness.py --device cuda --batch-size 64            # full size, GPU
    python benchmarks/eval_harness.py --scale 0.01 --shape tiny --device cpu   # CI-sized, ~1 min on 2 cores

Prints a table and writes a JSON record (--out). Results go in benchmarks/README.md with the device named.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED_ITEMS = {"bench_hellaswag": 10042, "bench_piqa": 1838, "bench_nq_open": 3610}
SHAPES = {
    "debug_3": {"dim": 1024, "layers": 8, "heads": 8, "max_seq_len": 2048},
    "tiny": {"dim": 64, "layers": 2, "heads": 4, "max_seq_len": 512},
}
# Mean lengths in characters of the real tasks' fields (hellaswag ctx/endings, piqa goal/solutions,
# nq_open question/answer), which for a byte-level model are also the token counts.
LENGTHS = {"hs_ctx": 230, "hs_end": 110, "piqa_goal": 110, "piqa_sol": 105, "nq_q": 48, "nq_a": 12}

YAML = {
    "bench_hellaswag": """task: bench_hellaswag
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: multiple_choice
test_split: test
doc_to_text: ctx
doc_to_choice: endings
doc_to_target: label
metric_list: [{{metric: acc}}, {{metric: acc_norm}}]
""",
    "bench_piqa": """task: bench_piqa
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_choice: "{{{{[sol1, sol2]}}}}"
doc_to_target: label
metric_list: [{{metric: acc}}, {{metric: acc_norm}}]
""",
    "bench_nq_open": """task: bench_nq_open
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}, train: {train}}}}}
output_type: generate_until
test_split: test
fewshot_split: train
doc_to_text: "Q: {{{{question}}}}?\\nA:"
doc_to_target: " {{{{answer}}}}"
target_delimiter: ""
generation_kwargs: {{until: ["\\n", ".", ","], do_sample: false}}
metric_list: [{{metric: exact_match, ignore_case: true, ignore_punctuation: true}}]
""",
}


def _text(words: list[str], rng: random.Random, chars: int) -> str:
    out, n = [], 0
    while n < chars:
        w = rng.choice(words)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def build_tasks(root: Path, scale: float, seed: int = 0) -> dict[str, int]:
    from pipeline.data.sources import kjv_chapters

    rng = random.Random(seed)
    words = " ".join(kjv_chapters()[:200]).replace("\n", " ").split()
    counts = {name: max(2, round(n * scale)) for name, n in SEED_ITEMS.items()}
    L = LENGTHS
    docs = {
        "bench_hellaswag": [
            {
                "ctx": _text(words, rng, L["hs_ctx"]),
                "label": rng.randrange(4),
                "endings": [_text(words, rng, L["hs_end"]) for _ in range(4)],
            }
            for _ in range(counts["bench_hellaswag"])
        ],
        "bench_piqa": [
            {
                "goal": _text(words, rng, L["piqa_goal"]),
                "sol1": _text(words, rng, L["piqa_sol"]),
                "sol2": _text(words, rng, L["piqa_sol"]),
                "label": rng.randrange(2),
            }
            for _ in range(counts["bench_piqa"])
        ],
        "bench_nq_open": [
            {"question": _text(words, rng, L["nq_q"]), "answer": _text(words, rng, L["nq_a"])}
            for _ in range(counts["bench_nq_open"])
        ],
    }
    for name, rows in docs.items():
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        train = root / f"{name}_train.jsonl"
        train.write_text("".join(json.dumps(r) + "\n" for r in rows[:50]))
        (root / f"{name}.yaml").write_text(YAML[name].format(data=data, train=train))
    return counts


def build_model(root: Path, shape: str, checkpoint: str | None, seed: int = 0) -> Path:
    if checkpoint:
        return Path(checkpoint)
    from pipeline.config.schema import ByteTokenizer, ModelConfig
    from pipeline.data.tokenizer import build_tokenizer
    from pipeline.model import build_model as build
    from pipeline.train.runtime import seed_everything

    seed_everything(seed)  # the random weights, and so the generations' lengths and the timings, repeat
    tok = build_tokenizer(ByteTokenizer(type="bytes"), [])
    model = build(ModelConfig(**SHAPES[shape]), len(tok), tok.eos_token_id)
    path = root / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="share of the seed's item counts")
    p.add_argument("--shape", choices=sorted(SHAPES), default="debug_3")
    p.add_argument("--checkpoint", help="a Hugging Face model dir instead of a random model of --shape")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch-size", default="64")
    p.add_argument("--max-gen-toks", type=int, default=None, help="default: lm-eval's (256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random model's weights")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    why = device_missing(args.device)
    if why:
        print(f"error: --device {args.device}: {why}", file=sys.stderr)
        raise SystemExit(2)

    from pipeline.config.schema import HarnessTask
    from pipeline.evaluate.harness import evaluate_tasks, normalise, timed_lm_class

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        counts = build_tasks(root, args.scale)
        model_dir = build_model(root, args.shape, args.checkpoint, args.seed)
        batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        lm = timed_lm_class()(
            pretrained=str(model_dir),
            dtype=args.dtype,
            device=args.device,
            batch_size=batch,
            max_length=SHAPES[args.shape]["max_seq_len"],
        )
        specs = [
            HarnessTask(task="bench_hellaswag"),
            HarnessTask(task="bench_piqa"),
            HarnessTask(task="bench_nq_open", num_fewshot=5),
        ]
        t0 = time.perf_counter()
        results = evaluate_tasks(lm, specs, [root], max_gen_toks=args.max_gen_toks)
        total = time.perf_counter() - t0
    record = {
        "device": args.device,
        "gpu": _gpu_name(),
        "host_cpu": platform.processor() or platform.machine(),
        "shape": args.shape,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "scale": args.scale,
        "seed": args.seed,
        "items": counts,
        "total_s": round(total, 2),
        "requests": {k: {"seconds": round(v["seconds"], 2), "requests": v["requests"]} for k, v in lm.timing.items()},
        "metrics": [{k: r[k] for k in ("task", "metric", "value")} for r in normalise(results, lm.chance_level)],
    }
    print(f"{'request type':<24}{'requests':>10}{'seconds':>10}")
    for kind, v in record["requests"].items():
        print(f"{kind:<24}{v['requests']:>10}{v['seconds']:>10.1f}")
    print(f"{'total (all tasks)':<24}{sum(counts.values()):>10}{record['total_s']:>10.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def device_missing(device: str) -> str | None:
    """Why `device` cannot run here (one line), or None: the default is cuda, absent on a CPU machine."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        return f"not a torch device ({str(exc).splitlines()[0]})"
    if kind == "cuda":
        from pipeline.gpu import cuda_status

        status = cuda_status()
        if not status["usable"]:
            return f"torch cannot use CUDA here ({status['reason']}); on a CPU machine pass --device cpu"
    return None


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


if __name__ == "__main__":
    main()
