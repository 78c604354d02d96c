"""`python -m pipeline <command>`: the entry point Make calls. Each stage command takes a run directory.

python -m pipeline resolve smoke --set train.steps=50   # validate + freeze runs/smoke/config.yaml
python -m pipeline train runs/smoke
python -m pipeline report runs/smoke --out reports/smoke
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC
from pathlib import Path

from pipeline.errors import UserError

log = logging.getLogger("pipeline")


def _offline_defaults() -> None:
    # Compute nodes have no internet: never let a stage hang on the hub. `make data` opts out explicitly.
    if os.environ.get("LABNOTE_ONLINE") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")


def _locked(run_dir: Path, shared: bool = False):
    """This run's lock (`pipeline/lock.py`), or nothing on a torchrun rank > 0 (rank 0 holds it for all)."""
    import contextlib

    from pipeline.lock import run_lock

    if int(os.environ.get("RANK", "0") or 0) != 0:
        return contextlib.nullcontext()
    return run_lock(run_dir, shared=shared, warn=log.warning)


def cmd_resolve(args) -> None:
    from pipeline import sweep
    from pipeline.config.load import load_experiment, split_overrides
    from pipeline.config.preflight import preflight
    from pipeline.config.resolve import freeze
    from pipeline.rundir import RunDir

    overrides = split_overrides(args.set)
    cfg = load_experiment(args.experiment, args.set)  # it splits SET itself: split items would be split twice
    run = RunDir.for_experiment(args.experiment) if args.run_dir is None else RunDir(args.run_dir)
    members = sweep.expand(cfg, overrides)
    if args.member:
        member = sweep.find(members, args.member, args.experiment)
        run, cfg = RunDir(run.root / member.name), member.config
        overrides = [*sweep.base_overrides(overrides), *member.overrides]
    elif members:  # the experiment itself: check every member before any of them runs
        for member in members:
            preflight(member.config, RunDir(run.root / member.name))
        if args.check:
            print(f"{args.experiment}: ok ({len(members)} members)")
            return
        with _locked(run.root):
            sweep.freeze_members(cfg, members, run.root)
        log.info("resolved %s: %d members", args.experiment, len(members))
        return
    preflight(cfg, run)
    if args.check:
        print(f"{args.experiment}: ok")
        return
    with _locked(run.root):
        changed = freeze(cfg, run, overrides, member=args.member)
    log.info("resolved %s; changed stamps: %s", run.root, [s for s, c in changed.items() if c] or "none")


def cmd_data(args) -> None:
    from pipeline.config.load import load_experiment
    from pipeline.data.fetch import fetch

    fetch(load_experiment(args.experiment, args.set))


def cmd_submit(args) -> None:
    from pipeline import records, sweep
    from pipeline.config.load import load_experiment, split_overrides
    from pipeline.config.resolve import freeze
    from pipeline.hpc.submit import submit, submit_bench_array, submit_members
    from pipeline.rundir import RunDir

    overrides = split_overrides(args.set)
    cfg = load_experiment(args.experiment, args.set)  # it splits SET itself: split items would be split twice
    run = RunDir.for_experiment(args.experiment)
    members = sweep.expand(cfg, overrides)
    if members:
        if args.bench_array:
            raise UserError("BENCH_ARRAY: a repeat/sweep already runs its members as a job array; drop BENCH_ARRAY=1")
        with _locked(run.root):
            if not args.dry_run or not records.MEMBERS.at(run.root).is_file():
                sweep.freeze_members(cfg, members, run.root)
            submitted = submit_members(cfg, members, args.sched, overrides, args.make_args, args.dry_run)
        _print_submitted(submitted, args)
        return
    with _locked(run.root):
        # A dry run writes its job script and never rewrites an existing run (its config stays what ran);
        # only a run that does not exist yet gets its frozen config, which the job then reads.
        if not args.dry_run or not run.config.is_file():
            freeze(cfg, run, overrides)
        if args.bench_array:
            submitted = submit_bench_array(cfg, args.sched, overrides, args.make_args, args.dry_run)
        else:
            submitted = [submit(cfg, args.sched, overrides, args.make_args, args.dry_run)]
    _print_submitted(submitted, args)


def _print_submitted(records: list[dict], args) -> None:
    for record in records:
        print(
            f"{record['script']}"
            + (
                f": submitted as {args.sched} job {record['job_id']}"
                if record["job_id"]
                else f" (dry run: not submitted{'; ' + record['command'] if record.get('command') else ''})"
            )
        )
        if record.get("then"):
            print(f"when it has ended: {record['then']}")


def cmd_import(args) -> None:
    from pipeline.config.load import parse_overrides
    from pipeline.importers import run_import
    from pipeline.names import check_name
    from pipeline.rundir import RunDir

    check_name(args.experiment, "EXP")
    mapping = {k: str(v) for k, v in parse_overrides(args.map).items()} if args.map else None
    with _locked(RunDir.for_experiment(args.experiment).root):
        run_import(Path(args.src), args.fmt, args.experiment, mapping, args.steps_planned, args.version)


def cmd_index(args) -> None:
    from pipeline.names import check_name
    from pipeline.report.index import build_compare, build_index

    for name in args.experiments:
        check_name(name, "EXPS")
    check_name(args.name, "NAME")
    for lang in args.lang or ["en"]:
        out = build_compare(args.experiments, args.name, lang=lang) if args.experiments else build_index(lang=lang)
        log.info("wrote %s", out)


def cmd_aggregate(args) -> None:
    """The aggregate report of a repeat/sweep (pipeline/report/aggregate.py) from runs/<EXP>/members.json."""
    from pipeline import records
    from pipeline.names import check_run_dir

    run_root = check_run_dir(args.run_dir)
    if not records.MEMBERS.at(run_root).is_file():
        raise UserError(f"{records.MEMBERS.at(run_root)}: not found; 'make resolve EXP={run_root.name}' writes it")
    from pipeline.report.aggregate import run_aggregate

    out = Path(args.out) if args.out else Path("reports") / run_root.name
    with _locked(run_root):
        for path in run_aggregate(run_root, out):
            log.info("wrote %s", path)


def cmd_html(args) -> None:
    from pipeline.report.html import write_html

    for report in args.reports:
        log.info("wrote %s", write_html(Path(report)))


def cmd_peek(args) -> None:
    from pipeline.names import check_run_dir
    from pipeline.report.render import peek

    run_dir = check_run_dir(args.run_dir)
    for path in peek(run_dir, Path(args.out)):
        log.info("wrote %s", path)


def cmd_bench_part(args) -> None:
    from pipeline.bench.sweep import collect_bench_parts, run_bench_part
    from pipeline.config.resolve import load_resolved
    from pipeline.names import check_run_dir

    run_dir = check_run_dir(args.run_dir)
    cfg = load_resolved(run_dir)
    if args.index == "collect":
        with _locked(run_dir):
            collect_bench_parts(cfg, run_dir)
        return
    try:
        index = int(args.index)
    except ValueError:
        raise UserError(f"INDEX: expected a variant number or 'collect', got {args.index!r}") from None
    with _locked(run_dir, shared=True):  # job-array tasks write separate parts side by side
        run_bench_part(cfg, run_dir, index)


def cmd_bench_variant(args) -> None:
    from pipeline.bench.sweep import run_variant_process

    run_variant_process(Path(args.run_dir), args.variant, args.repeat, Path(args.out))


def _stage(name: str):
    def run(args) -> None:
        from datetime import datetime

        from pipeline.config.resolve import config_hash, load_resolved
        from pipeline.names import check_run_dir
        from pipeline.provenance import record_stage
        from pipeline.rundir import RunDir
        from pipeline.stages import STAGE

        run_dir = check_run_dir(args.run_dir)
        if getattr(args, "out", None):
            check_run_dir(args.out, "report directory")
        if not (run_dir / "config.yaml").is_file():
            load_resolved(run_dir)  # one line: resolve first (and no lock file left in a folder that is not a run)
        with _locked(run_dir):
            cfg = load_resolved(run_dir)
            if cfg.imported and name != "report":
                raise UserError(
                    f"{run_dir}: imported from {cfg.imported.format} ({cfg.imported.source}); "
                    f"it has no {name} stage to run here, only `make report`"
                )
            started, t0 = datetime.now(UTC).isoformat(timespec="seconds"), time.perf_counter()
            main_rank = name != "report" and int(os.environ.get("RANK", "0")) == 0
            if main_rank:  # provenance first: a crash never leaves a stage marked done without its record
                record_stage(RunDir(run_dir), name, started, None, None, config_hash(cfg))
            func = STAGE[name].function(cfg)
            out = func(cfg, run_dir, Path(args.out)) if getattr(args, "out", None) else func(cfg, run_dir)
            ended = datetime.now(UTC).isoformat(timespec="seconds")
            if main_rank:
                record_stage(RunDir(run_dir), name, started, ended, time.perf_counter() - t0, config_hash(cfg))
        log.info("%s -> %s (%.1f s)", name, out, time.perf_counter() - t0)

    return run


def build_parser() -> argparse.ArgumentParser:
    from pipeline.report.i18n import LANGUAGES

    parser = _Parser(prog="python -m pipeline", description="labnote: experiments that write their reports")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("resolve", help="validate an experiment and freeze it into its run directory")
    p.add_argument("experiment")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.steps=50")
    p.add_argument("--run-dir", default=None, help="default runs/<experiment>")
    p.add_argument("--check", action="store_true", help="validate only, write nothing")
    p.add_argument("--member", default=None, help="one member of a repeat/sweep, e.g. seed-1 (runs/<exp>/<member>/)")
    p.set_defaults(func=cmd_resolve)
    p = sub.add_parser("data", help="prefetch hub datasets/tokenizers into HF_HOME (needs internet)")
    p.add_argument("experiment")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("submit", help="write a Slurm/PJM job script that runs `make report`, and submit it")
    p.add_argument("experiment")
    p.add_argument("--sched", choices=["slurm", "pjm"], default="slurm")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--make-args", default="", help="extra make variables for the job, e.g. 'RUNTIME=apptainer SIF=…'")
    p.add_argument("--dry-run", action="store_true", help="write the script, do not submit")
    p.add_argument(
        "--bench-array",
        action="store_true",
        help="run the bench variants as a job array, then the report in a job that waits for it",
    )
    p.set_defaults(func=cmd_submit)
    from pipeline.importers import ADAPTERS

    p = sub.add_parser(
        "import",
        help=f"convert another trainer's run ({', '.join(ADAPTERS)}) into runs/<experiment>/",
        epilog="FROM:\n" + "\n".join(f"  {name:<12} {a.description}" for name, a in ADAPTERS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", help="the tool's output directory or file")
    p.add_argument("--from", dest="fmt", required=True, metavar="FROM", help=f"one of {', '.join(ADAPTERS)}, or auto")
    p.add_argument("--exp", dest="experiment", required=True, help="name of the run directory to create")
    p.add_argument(
        "--version",
        dest="version",
        default=None,
        help="which of several runs in SRC to read (a lightning_logs version, a checkpoint, a log folder); "
        "default: the newest",
    )
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OURS=COLUMN",
        help=f"{', '.join(n for n, a in ADAPTERS.items() if a.takes_mapping)}: the column of loss, val_loss, lr, …",
    )
    p.add_argument("--steps-planned", type=int, default=None, help="planned steps, when the source does not say")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("index", help="reports/README.md (all runs), or with experiments: reports/compare/<name>.md")
    p.add_argument("experiments", nargs="*")
    p.add_argument("--name", default="compare", help="file name of the comparison")
    p.add_argument(
        "--lang",
        action="append",
        choices=LANGUAGES,
        help="language, repeatable: en -> README.md, ja -> README.ja.md (<name>.ja.md); default en",
    )
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("aggregate", help="the report of a repeat/sweep across its members: reports/<exp>/report.md")
    p.add_argument("run_dir", help="runs/<experiment> (holding members.json)")
    p.add_argument("--out", default=None, help="report directory (default reports/<experiment>)")
    p.set_defaults(func=cmd_aggregate)
    p = sub.add_parser("html", help="report.md -> a self-contained report.html (images inlined)")
    p.add_argument("reports", nargs="+", metavar="report.md")
    p.set_defaults(func=cmd_html)
    p = sub.add_parser("peek", help="the report so far of a running train stage (no lock taken)")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder for the live report, e.g. reports/<experiment>/peek")
    p.set_defaults(func=cmd_peek)
    p = sub.add_parser("bench-part", help="one variant of a sweep (a job-array task), or 'collect' the parts")
    p.add_argument("run_dir")
    p.add_argument("index", help="variant index (0-based), or 'collect'")
    p.set_defaults(func=cmd_bench_part)
    p = sub.add_parser("bench-variant", help=argparse.SUPPRESS)  # child process of the bench stage
    p.add_argument("run_dir")
    p.add_argument("variant")
    p.add_argument("repeat", type=int)
    p.add_argument("out")
    p.set_defaults(func=cmd_bench_variant)
    from pipeline.stages import STAGES

    for stage in STAGES:
        p = sub.add_parser(stage.name, help=stage.help)
        p.add_argument("run_dir")
        if stage.name == "report":
            p.add_argument("--out", default=None, help="report directory (default reports/<experiment>)")
        p.set_defaults(func=_stage(stage.name))
    return parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _disk_full_line(exc: BaseException, args) -> str | None:
    """A full disk seen through a library that does not say so (torch.save: 'N requested and M written')."""
    import shutil

    text = str(exc)
    path = Path(getattr(args, "run_dir", None) or "runs")
    if not any(w in text for w in ("written", "write", "No space")):
        return None
    try:
        free = shutil.disk_usage(path if path.exists() else Path.cwd()).free
    except OSError:
        return None
    if free > 64 * 2**20:
        return None
    from pipeline.config.preflight import planned_bytes

    need = planned_bytes(path)
    tail = f", need ≈{need / 2**20:,.0f} MB" if need else ""
    return f"no space left on device: {path}{tail} ({free / 2**20:,.1f} MB free)"


def environment_error(exc: OSError) -> str | None:
    """One line for the file-system errors a user can fix (full disk, read-only or forbidden paths)."""
    import errno

    where = exc.filename or "?"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        from pipeline.config.preflight import planned_bytes

        need = planned_bytes(Path(str(where)))
        tail = f", need ≈{need / 2**20:,.0f} MB" if need else ""
        return f"no space left on device: {where}{tail}"
    if exc.errno == errno.EROFS:
        return f"read-only file system: {where}; run from a writable copy of the project"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where}"
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    _offline_defaults()
    from pipeline.lock import LockBusy

    try:
        args.func(args)
    except (UserError, LockBusy) as exc:
        # Stages know the run directory, not how the user named the experiment: fill in the hint here.
        name = getattr(args, "experiment", None) or Path(getattr(args, "run_dir", "") or "<exp>").name
        print(f"error: {str(exc).replace('EXP=<exp>', f'EXP={name}')}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        line = environment_error(exc) or _disk_full_line(exc, args)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except SystemExit:
        raise
    except Exception as exc:
        line = _disk_full_line(exc, args)
        if line is not None:
            print(f"error: {line}", file=sys.stderr)
            return 2
        import traceback

        traceback.print_exc()
        print(
            f"error: internal error ({type(exc).__name__}): this is a bug in labnote, not in your input; "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return 1
    return 0
