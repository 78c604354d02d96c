"""`make submit`: render a Slurm or PJM job script from `templates/hpc/`, write it into the run directory,
submit it, and record the job id in `runs/<EXP>/jobs/submitted.jsonl`.

The job runs the same `make report` (same RUNTIME/SIF/PY and SET overrides) inside the allocation, so a
job and an interactive run produce the same run directory.

The job id comes from the scheduler's output:

>>> parse_job_id("slurm", "123;cluster"), parse_job_id("pjm", "[INFO] PJM 0000 pjsub Job 456 submitted.")
('123', '456')
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from pipeline import jsonl
from pipeline.atomic import current_umask, write_text
from pipeline.config.schema import Experiment
from pipeline.errors import ConfigError, UserError
from pipeline.rundir import RunDir

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "hpc"
SUBMIT = {"slurm": ["sbatch", "--parsable"], "pjm": ["pjsub"]}


def make_command(
    cfg: Experiment,
    overrides: list[str],
    make_args: str,
    target: str = "report",
    shell_tail: str = "",
    shell_target: str | None = None,
) -> str:
    """The job's make line; `shell_tail` is appended unquoted (it may hold $VARIABLES for the job's shell), and
    `shell_target` replaces the target unquoted (e.g. `"member/report/${MEMBERS[$SLURM_ARRAY_TASK_ID]}"`)."""
    parts = ["make", target, f"EXP={cfg.name}", *shlex.split(make_args)]
    if overrides:
        parts.append(f"SET={shlex.join(overrides)}")  # split again by the job's load_experiment
    line = shlex.join(parts) if shell_target is None else f"make {shell_target} {shlex.join(parts[2:])}"
    return line + (f" {shell_tail}" if shell_tail else "")


def render_job(
    cfg: Experiment,
    sched: str,
    overrides: list[str],
    make_args: str,
    project: Path,
    make_cmd: str | None = None,
    **slurm_extra,
) -> str:
    if sched == "pjm" and cfg.hpc.nodes > 1:
        raise ConfigError("hpc.nodes: multi-node jobs are supported with SCHED=slurm only (PJM: one node)")
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    run = RunDir(project / "runs" / cfg.name)
    return env.get_template(f"{sched}.sh.j2").render(
        experiment=cfg.name,
        job_name=cfg.hpc.job_name or f"labnote-{cfg.name}",
        hpc=cfg.hpc,
        project_dir=shlex.quote(str(project)),
        log_dir=str(run.root / "jobs"),
        make_cmd=make_cmd or make_command(cfg, overrides, make_args),
        array=slurm_extra.get("array"),
        dependency=slurm_extra.get("dependency"),
        log_name=slurm_extra.get("log_name", "slurm-%j.out"),
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def parse_job_id(sched: str, stdout: str) -> str:
    """sbatch --parsable prints `123` or `123;cluster`; pjsub prints `[INFO] PJM 0000 pjsub Job 123 submitted.`"""
    match = re.search(r"^(\d+)", stdout.strip()) if sched == "slurm" else re.search(r"Job (\d+) submitted", stdout)
    if not match:
        raise UserError(f"{SUBMIT[sched][0]}: could not read a job id from its output: {stdout.strip()[:200]!r}")
    return match.group(1)


def submit(
    cfg: Experiment,
    sched: str,
    overrides: list[str],
    make_args: str,
    dry_run: bool = False,
    script: str | None = None,
    name: str | None = None,
    submit_args: tuple[str, ...] = (),
) -> dict:
    project = Path.cwd().resolve()
    run = RunDir(project / "runs" / cfg.name)
    script = script or render_job(cfg, sched, overrides, make_args, project)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = run.root / "jobs" / f"{name or sched}-{stamp}.sh"
    write_text(path, script)
    path.chmod(0o777 & ~current_umask())  # executable, readable as the umask allows
    record = {"sched": sched, "script": str(path.relative_to(project)), "submitted_utc": stamp, "job_id": None}
    command = [*SUBMIT[sched], *submit_args]
    if submit_args:
        record["command"] = shlex.join([*command, record["script"]])
    if dry_run:
        return record
    if shutil.which(command[0]) is None:
        raise UserError(
            f"{command[0]}: not found; submit from a {sched} login node (or DRY_RUN=1 to only write "
            f"the script: {record['script']})"
        )
    proc = subprocess.run([*command, str(path)], capture_output=True, text=True, cwd=project)
    if proc.returncode != 0:
        raise UserError(f"{command[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
    record["job_id"] = parse_job_id(sched, proc.stdout)
    jsonl.append(run.root / "jobs" / "submitted.jsonl", record)
    return record


def submit_bench_array(
    cfg: Experiment, sched: str, overrides: list[str], make_args: str, dry_run: bool = False
) -> list[dict]:
    """One array task per bench variant, then a job that waits for all of them and writes the report."""
    if sched != "slurm":
        raise ConfigError("SCHED: bench job arrays are supported with SCHED=slurm only")
    if cfg.bench is None:
        raise ConfigError("bench: --bench-array needs a bench: section")
    project, n = Path.cwd().resolve(), len(cfg.bench.expanded())
    part = make_command(cfg, overrides, make_args, "bench-part", 'INDEX="$SLURM_ARRAY_TASK_ID"')
    array = submit(
        cfg,
        sched,
        overrides,
        make_args,
        dry_run,
        name="slurm-bench-array",
        script=render_job(
            cfg, sched, overrides, make_args, project, make_cmd=part, array=f"0-{n - 1}", log_name="slurm-%A_%a.out"
        ),
    )
    # afterany: the report must also be written when a variant's task fails; the sweep records the failure.
    collect = (
        make_command(cfg, overrides, make_args, "bench-collect") + " && " + make_command(cfg, overrides, make_args)
    )
    dependency = f"afterany:{array['job_id']}" if array["job_id"] else "afterany:<array job id>"
    report = submit(
        cfg,
        sched,
        overrides,
        make_args,
        dry_run,
        name="slurm-bench-report",
        script=render_job(cfg, sched, overrides, make_args, project, make_cmd=collect, dependency=dependency),
    )
    return [array, report]


def _members_line(members: list) -> str:
    """The job's bash array of member directories (array task i runs member i)."""
    return f"MEMBERS=({' '.join(shlex.quote(m.name) for m in members)})"


def submit_members(
    cfg: Experiment, members: list, sched: str, overrides: list[str], make_args: str, dry_run: bool = False
) -> list[dict]:
    """A repeat/sweep: every member as one task of a Slurm job array (a PJM bulk job), each running that member's
    `make report` (pipeline/member.py records how it ended); with Slurm, then a job that waits for all of them
    (afterany: failed members too) and writes the aggregate report."""
    project, n = Path.cwd().resolve(), len(members)
    index = {"slurm": "$SLURM_ARRAY_TASK_ID", "pjm": "$PJM_BULKNUM"}[sched]
    task = make_command(cfg, overrides, make_args, shell_target=f'"member/report/${{MEMBERS[{index}]}}"')
    script = render_job(
        cfg,
        sched,
        overrides,
        make_args,
        project,
        make_cmd=f"{_members_line(members)}\n{task}",
        array=f"0-{n - 1}" if sched == "slurm" else None,
        log_name="slurm-%A_%a.out",
    )
    bulk = ("--bulk", "--sparam", f"0-{n - 1}") if sched == "pjm" else ()
    array = submit(cfg, sched, overrides, make_args, dry_run, script=script, name=f"{sched}-members", submit_args=bulk)
    if sched == "pjm":
        # PJM cannot make a job wait for a bulk job; the aggregate is one command once the bulk job has ended.
        array["then"] = make_command(cfg, overrides, make_args, "aggregate")
        return [array]
    dependency = f"afterany:{array['job_id']}" if array["job_id"] else "afterany:<array job id>"
    aggregate = submit(
        cfg,
        sched,
        overrides,
        make_args,
        dry_run,
        name="slurm-aggregate",
        script=render_job(
            cfg,
            sched,
            overrides,
            make_args,
            project,
            make_cmd=make_command(cfg, overrides, make_args, "aggregate"),
            dependency=dependency,
        ),
    )
    return [array, aggregate]
