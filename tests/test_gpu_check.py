"""benchmarks/gpu_check.sh --cpu-dry-run: the GPU check's code paths end to end on CPU at tiny sizes (no GPU here:
the figures are meaningless, the records and the summary must be complete)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # ≈1 min on an idle 2-core VM (four bench processes, a compiled training run)


def test_gpu_check_cpu_dry_run_writes_one_complete_json(tmp_path: Path):
    env = {**os.environ, "PY": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work")}
    proc = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["device"] == "cpu" and result["bench_train"]["tokens_per_s"] > 0
    assert result["bench_eval"]["total_s"] > 0
    assert set(result["sweep"]) == {"fp32", "bf16", "lora-bf16", "qlora-bf16"}
    assert all(v["status"] == "ok" for v in result["sweep"].values())
    assert result["smoke"]["status"] == "completed" and result["expectations"]["smoke_loss_finite"]
    assert "expect qlora_below_lora_peak_memory" in proc.stdout
    assert not (REPO / "runs" / "gpu_check_sweep").exists()  # runs go to the scratch dir, never runs/
