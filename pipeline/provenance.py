"""Provenance: where, when, from which code and config each stage ran (`runs/<EXP>/provenance.json`).

Secrets never land here: environment variables are recorded only from an allow-list of prefixes, and
any name that looks secret (KEY, TOKEN, SECRET, PASSWORD, ...) is dropped even then (seed 000 leaked a
W&B API key into its report).

>>> safe_environment({"SLURM_JOB_ID": "42", "HF_TOKEN": "hf_x", "WANDB_API_KEY": "k", "HOME": "/home/u"})
{'SLURM_JOB_ID': '42'}
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pipeline import records
from pipeline.rundir import RunDir

ENV_PREFIXES = (
    "SLURM_",
    "PJM_",
    "APPTAINER_",
    "SINGULARITY_",
    "HF_",
    "CUDA_",
    "NCCL_",
    "OMP_",
    "TORCH",
    "PYTORCH_",
    "LABNOTE_",
    "CONTAINER",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "MASTER_",
)
SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.I)
PACKAGES = ("torch", "transformers", "datasets", "tokenizers", "lm_eval", "peft", "numpy", "pandas", "pydantic")


def safe_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) and not SECRET.search(k)}


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_toplevel(folder: Path) -> Path | None:
    """The repository a folder belongs to, or None."""
    top = _run(["git", "rev-parse", "--show-toplevel"], cwd=folder)
    return Path(top.strip()).resolve() if top else None


def git_state(cwd: Path | None = None) -> dict:
    """This project's git state, or (`cwd`) that of the repository holding another folder (a train.command's
    script)."""
    commit = _run(["git", "rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    # Generated reports are outputs, not code: they do not make the tree dirty.
    status = _run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports"], cwd) or ""
    diff = _run(["git", "diff", "HEAD", "--", ".", ":!reports"], cwd) or ""
    return {
        "commit": commit.strip(),
        "dirty": bool(status.strip()),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    """CPU, and the GPU side as pipeline/gpu.py sees it: NVIDIA devices visible, CUDA usable (or torch's reason),
    torch's CUDA build vs the driver's highest CUDA, cuDNN, NCCL, each GPU's sm_XY vs the build's arch list."""
    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpus": []}
    try:
        import torch
    except ImportError:
        return info
    from pipeline import gpu

    info["torch_threads"] = torch.get_num_threads()
    info.update(gpu.describe())
    return info


def scheduler_info(env: dict[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" in env:
        return {"scheduler": "slurm", "job_id": env["SLURM_JOB_ID"], "nodes": env.get("SLURM_JOB_NODELIST")}
    if "PJM_JOBID" in env:
        return {"scheduler": "pjm", "job_id": env["PJM_JOBID"]}
    return {"scheduler": None, "job_id": None}


def container_info(env: dict[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER")
    if image:
        return {"runtime": "apptainer", "image": image, "sha256": env.get("LABNOTE_IMAGE_SHA256")}
    if Path("/run/.containerenv").exists() or Path("/.dockerenv").exists():
        return {"runtime": "oci", "image": env.get("LABNOTE_IMAGE"), "sha256": env.get("LABNOTE_IMAGE_SHA256")}
    return {"runtime": None, "image": None, "sha256": None}


def environment_snapshot() -> dict:
    return {
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "platform": platform.platform(),
        "git": git_state(),
        "versions": versions(),
        "device": device_info(),
        "scheduler": scheduler_info(),
        "container": container_info(),
        "env": safe_environment(),
    }


def _current(run: RunDir) -> dict:
    """The provenance so far. A damaged provenance.json is rebuilt from what can still be read (each stage's
    entry that parses) and this stage's facts, with a note in `repairs` (the report's damaged_files check)."""
    problems: list[str] = []
    prov = records.PROVENANCE.read(run.root, problems)
    if prov:
        return prov.model_dump(mode="json", exclude_unset=True)
    if not problems:
        return {"stages": {}}
    salvaged = _salvage_stages(run.provenance)
    note = f"{problems[0].removesuffix('; ignored')}; rebuilt" + (
        f" (kept the records of {', '.join(salvaged)})" if salvaged else " (earlier stages' records were lost)"
    )
    return {"stages": salvaged, "repairs": [note]}


def _salvage_stages(path: Path) -> dict:
    """Stage entries of a damaged provenance.json that still parse on their own (a cut-off file keeps its head)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return {}
    import json

    out = {}
    from pipeline.stages import STAGES

    names = "|".join(re.escape(s.name) for s in STAGES)
    for match in re.finditer(rf'"({names})": (\{{[^{{}}]*(?:\{{[^{{}}]*\}}[^{{}}]*)*\}})', text):
        try:
            entry = json.loads(match.group(2))
        except ValueError:
            continue
        if isinstance(entry, dict) and "started_utc" in entry:
            out[match.group(1)] = entry
    return out


def record_device_peak(run: RunDir, peak: dict) -> None:
    """The train stage's measured matmul peak (the MFU denominator), kept next to the stage records."""
    record_fact(run, "device_peak", peak)


def record_fact(run: RunDir, key: str, value) -> None:
    """One top-level fact a stage measured (`device_peak`, `train_device`, `nccl`), next to the stage records."""
    prov = _current(run)
    prov[key] = value
    records.PROVENANCE.write(run.root, prov)


def _launches(prov: dict, run: RunDir, stage: str, started: str, ended, duration_s, snap: dict) -> list[dict]:
    """Every launch of a stage (a resumed run has several): when and where, with the stage's input hash, so a
    report can add up the time spent on the same inputs and see what each restart cost."""
    launches = list(((prov.get("stages") or {}).get(stage) or {}).get("launches") or [])
    stamp = run.stamp(stage)
    launch = {
        "started_utc": started,
        "ended_utc": ended,
        "duration_s": None if duration_s is None else round(duration_s, 3),
        "host": snap["host"],
        "job_id": snap["scheduler"]["job_id"],
        "stage_hash": stamp.read_text().strip() if stamp.is_file() else None,
    }
    if ended is not None and launches and launches[-1].get("started_utc") == started:
        launches[-1].update(launch)  # the end of the launch that began at `started`
    else:
        launches.append(launch)
    return launches[-1000:]


def note_launch(run: RunDir, stage: str, previous_last_seen: str | None = None, **facts) -> None:
    """Add facts the stage learnt (e.g. the step it resumed from) to its current launch. A previous launch that
    never recorded its end was killed: its last log line (`previous_last_seen`, UTC) closes it."""
    from datetime import datetime

    prov = _current(run)
    entry = (prov.get("stages") or {}).get(stage)
    if not entry or not entry.get("launches"):
        return
    launches = entry["launches"]
    launches[-1].update(facts)
    if len(launches) > 1 and launches[-2].get("ended_utc") is None and previous_last_seen:
        try:
            seconds = (datetime.fromisoformat(previous_last_seen)
                       - datetime.fromisoformat(launches[-2]["started_utc"])).total_seconds()  # fmt: skip
        except (TypeError, ValueError):
            seconds = None
        launches[-2].update(ended_utc=previous_last_seen, killed=True,
                            duration_s=round(seconds, 3) if seconds is not None and seconds >= 0 else None)  # fmt: skip
    records.PROVENANCE.write(run.root, prov)


def record_stage(
    run: RunDir,
    stage: str,
    started: str,
    ended: str | None,
    duration_s: float | None,
    config_hash: str,
    extra: dict | None = None,
) -> None:
    """Merge this stage's entry into provenance.json (stages run one after another, under the run's lock).
    Called at the start (`ended` None: the stage is running) and again at the end, so a stage's DONE marker
    is never there without its record."""
    prov = _current(run)
    snap = environment_snapshot()
    prov.update({"experiment": run.root.name, "config_hash": config_hash, "config_file": "config.yaml", **snap})
    launches = _launches(prov, run, stage, started, ended, duration_s, snap)
    prov.setdefault("stages", {})[stage] = {
        "launches": launches,
        "started_utc": started,
        "ended_utc": ended,
        "duration_s": None if duration_s is None else round(duration_s, 3),
        "argv": sys.argv,
        "host": snap["host"],
        "job_id": snap["scheduler"]["job_id"],
        "git_commit": snap["git"]["commit"],
        **(extra or {}),
    }
    records.PROVENANCE.write(run.root, prov)
