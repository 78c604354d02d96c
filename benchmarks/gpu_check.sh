#!/usr/bin/env bash
# One GPU check, ≤ 8 min on one H100/H200: bench-train at the debug_3 shape (tokens/s, MFU, paired overhead vs
# the bare loop over 200 steps), bench-eval at seed 000's sizes, the gpu_check_sweep (teacher_speed's
# fp32/bf16/LoRA/QLoRA variants, 3 repeats: bf16 < fp32 and QLoRA < LoRA peak memory) and a torch.compile + bf16
# smoke training run. Writes one JSON of results (and prints a table).
#
#   benchmarks/gpu_check.sh [--out DIR]        on the GPU machine (DIR default: benchmarks/results/gpu_check)
#   benchmarks/gpu_check.sh --cpu-dry-run      the same code paths on CPU at tiny sizes (CI, < 1 min)
#
# A bare CUDA PyTorch machine lacks datasets, lm-eval, bitsandbytes, …: when .whl/ exists (make gpu-wheels, carried
# with the checkout) they are installed from it first, offline (pip --no-index --find-links .whl/). PY=… picks
# the interpreter (default: .venv/bin/python if present, else python3). Runs go to a scratch directory, never runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DRY=0
OUTDIR=benchmarks/results/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --out) OUTDIR=$2; shift ;;
    *) echo "error: gpu_check.sh: unknown argument '$1' (--cpu-dry-run, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3)}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=${GPU_CHECK_WORK:-$(mktemp -d -t labnote-gpu-check.XXXXXX)}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg

if [ -d .whl ] && [ "$DRY" = 0 ]; then
  # Offline: only what the machine lacks is installed; its own torch is kept (pinned as a constraint).
  echo "== installing from .whl/ (offline)"
  grep -v -E '^(torch|pytest|ruff)([=<>~! ]|$)' requirements.txt > "$WORK/requirements-gpu.txt"
  "$PY" -c 'import torch; print("torch==" + torch.__version__)' > "$WORK/torch-pin.txt"
  "$PY" -m pip install -q --no-index --find-links .whl/ -r "$WORK/requirements-gpu.txt" -c "$WORK/torch-pin.txt"
fi

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  export LABNOTE_PEAK_SECONDS=0.2
  TRAIN_ARGS=(--shape tiny --device cpu --steps 3 --warmup 1 --peak-seconds 0.2)
  EVAL_ARGS=(--scale 0.002 --shape tiny --device cpu --dtype float32 --batch-size 8 --max-gen-toks 4)
  SWEEP_SET="train.device=cpu model.dim=64 model.layers=1 model.heads=2 model.max_seq_len=64 bench.seq_len=32 data.seq_len=32 bench.steps=1 bench.warmup_steps=1 bench.repeats=1 bench.fixed.batch_size=2"
  SMOKE_SET="train.device=cpu train.compile=true train.precision=bf16 train.steps=2 train.warmup_steps=1 train.log_every=1 train.eval_every=2 train.eval_batches=1 train.checkpoint_every=2 train.batch_size=4 model.dim=32 model.layers=1 model.heads=2 data.max_documents=200 data.tokenizer.vocab_size=300"
else
  DEVICE=cuda
  TRAIN_ARGS=(--device cuda --steps 200 --warmup 5)
  EVAL_ARGS=(--device cuda --batch-size 64)
  SWEEP_SET="train.device=cuda"
  SMOKE_SET="train.device=cuda train.compile=true train.precision=bf16 train.steps=300"
fi

"$PY" - <<'EOF' > "$OUTDIR/environment.json"
import json
from pipeline.provenance import device_info, versions
print(json.dumps({"device": device_info(), "versions": versions()}, indent=1, default=str))
EOF

t0=$SECONDS
echo "== bench-train (${TRAIN_ARGS[*]})"
"$PY" benchmarks/train_throughput.py "${TRAIN_ARGS[@]}" --out "$OUTDIR/train.json"
echo "== bench-eval (${EVAL_ARGS[*]})"
"$PY" benchmarks/eval_harness.py "${EVAL_ARGS[@]}" --out "$OUTDIR/eval.json"
echo "== gpu_check_sweep ($SWEEP_SET)"
"$PY" -m pipeline resolve gpu_check_sweep --run-dir "$WORK/runs/gpu_check_sweep" --set "$SWEEP_SET" >/dev/null
"$PY" -m pipeline bench "$WORK/runs/gpu_check_sweep"
cp "$WORK/runs/gpu_check_sweep/bench/summary.json" "$OUTDIR/sweep.json"
echo "== smoke, torch.compile + bf16 ($SMOKE_SET)"
"$PY" -m pipeline resolve smoke --run-dir "$WORK/runs/gpu_check_smoke" --set "$SMOKE_SET" >/dev/null
"$PY" -m pipeline prepare "$WORK/runs/gpu_check_smoke"
"$PY" -m pipeline train "$WORK/runs/gpu_check_smoke"
cp "$WORK/runs/gpu_check_smoke/train/DONE" "$OUTDIR/smoke_done.json"
cp "$WORK/runs/gpu_check_smoke/train/metrics.jsonl" "$OUTDIR/smoke_metrics.jsonl"
cp "$WORK/runs/gpu_check_smoke/provenance.json" "$OUTDIR/smoke_provenance.json"

"$PY" benchmarks/gpu_check_summary.py "$OUTDIR" --device "$DEVICE" --seconds $((SECONDS - t0))
[ -n "${GPU_CHECK_WORK:-}" ] || rm -rf "$WORK"
