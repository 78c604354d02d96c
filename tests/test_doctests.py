"""The docstring examples in pipeline/ run with the suite (pyproject: `--doctest-modules`, testpaths include
pipeline/). Doctest collection imports every module, so importing each one must be harmless: no GPU, no files
written, no command run (`pipeline/__main__.py` calls `main()`; pytest never imports a `__main__.py`)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, pipeline_env

IMPORT_ALL = """
import importlib, json, pkgutil, sys
import pipeline
names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.") if m.name != "pipeline.__main__"]
for name in names:
    importlib.import_module(name)
import torch
print(json.dumps({"modules": names, "cuda_initialized": torch.cuda.is_initialized()}))
"""


def test_pytest_runs_the_package_doctests():
    opts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "pipeline" in opts["testpaths"]
    assert "--doctest-modules" in opts["addopts"].split()


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_every_module_imports_without_gpu_or_side_effects(tmp_path: Path):
    import json

    env = pipeline_env(CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    files = [p.relative_to(REPO).with_suffix("").parts for p in (REPO / "pipeline").rglob("*.py")]
    expected = {".".join(parts[:-1] if parts[-1] == "__init__" else parts) for parts in files}
    assert set(out["modules"]) | {"pipeline"} == expected - {"pipeline.__main__"}
    assert out["cuda_initialized"] is False
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory (runs/, reports/, …)


@pytest.mark.slow  # seconds: a subprocess or a real filesystem fault; `make test` runs it
def test_doctest_collection_skips_main_and_imports_cleanly():
    # If pytest imported pipeline/__main__.py, main() would print its usage and exit: a collection error.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "pipeline"],
        cwd=REPO,
        env=pipeline_env(CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert "pipeline/train/flops.py::pipeline.train.flops" in collected
    assert not any("__main__" in line for line in collected)
    assert "usage" not in (proc.stdout + proc.stderr).lower()
