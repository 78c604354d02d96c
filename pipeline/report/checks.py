"""Sanity checks: small named rules `(Run) -> Finding | None`, listed once in `RULES`.

Each rule states the numbers that triggered it, so a reader can verify the verdict from the tables.
Severity: `error` (the run's result must not be trusted as is), `warning` (look before believing),
`info` (context a reader should have). A rule with `baseline=True` compares the run with the report's
`compare_to` run, `(baseline, run) -> Finding | None`, and is skipped without one.

Messages are `N_(…)` (pipeline/report/i18n.py): English here, translated when the report is rendered. Each
entry of `RULES` carries a short translatable description; "No check fired (rules: …)" lists them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.report import compare
from pipeline.report.i18n import N_, Msg
from pipeline.report.loader import Run

if TYPE_CHECKING:
    pass

# pandas only where a frame is built (see loader.py: the index imports this module without reading frames).

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: Msg


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def run_incomplete(run: Run) -> Finding | None:
    if "train" not in run.stages:
        return None
    planned, done = run.steps_planned, run.steps_done
    if run.done.status == "early_stopped":  # the configured rule ended it; the status line says so and why
        return None
    if planned and done < planned:
        return Finding(
            "run_incomplete",
            "error",
            N_(
                "{done} of {planned} configured steps ran ({pct:.0f}%); results describe a partial run",
                done=done,
                planned=planned,
                pct=100 * done / planned,
            ),
        )
    return None


def command_failed(run: Run) -> Finding | None:
    """A train.command that exited non-zero: its exit code, how far it got and its last stderr line."""
    if not run.done.external or run.done.status != "failed":
        return None
    last = (run.done.stderr_tail or [""])[-1]
    planned = "?" if run.steps_planned is None else format(run.steps_planned, ",d")
    message = N_(
        "train.command exited with code {code} after {done:,d} of {planned} steps; last stderr line: {last}",
        code=run.done.exit_code,
        done=run.steps_done,
        planned=planned,
        last="`" + last + "`" if last else "—",
    )
    return Finding("command_failed", "error", message)


def nonfinite_loss(run: Run) -> Finding | None:
    bad = []
    for label, frame, col in (
        (N_("{n} non-finite training loss value(s), first at step {first}"), run.metrics, "loss"),
        (N_("{n} non-finite validation loss value(s), first at step {first}"), run.validation, "val_loss"),
    ):
        values = frame[col].to_numpy(dtype=float) if len(frame) else np.array([])
        n = int((~np.isfinite(values)).sum())
        if n:
            first = int(frame["step"][~np.isfinite(values)].iloc[0])
            bad.append(N_(label.msgid, n=n, first=first))
    ppl = run.perplexity
    if ppl.nan_count or ppl.inf_count:
        bad.append(
            N_(
                "perplexity eval had {nan} NaN and {inf} Inf batches",
                nan=ppl.nan_count or 0,
                inf=ppl.inf_count or 0,
            )
        )
    if run.done.status == "stopped_nonfinite":
        bad.append(N_("training stopped at step {step}", step=run.done.steps_done))
    return Finding("nonfinite_loss", "error", Msg.join(bad)) if bad else None


def loss_not_decreasing(run: Run, min_drop: float = 0.01) -> Finding | None:
    """Validation loss (or, without it, the mean of the first vs last quarter of training losses)."""
    val = run.validation["val_loss"].dropna() if len(run.validation) else []
    if len(val) >= 2:
        first, last, what = float(val.iloc[0]), float(val.iloc[-1]), N_("validation loss")
    else:
        loss = run.metrics["loss"].dropna() if len(run.metrics) else []
        if len(loss) < 4:
            return None
        k = max(1, len(loss) // 4)
        first, last, what = float(loss.iloc[:k].mean()), float(loss.iloc[-k:].mean()), N_("training loss")
    if not (math.isfinite(first) and math.isfinite(last)) or first <= 0:
        return None
    drop = (first - last) / first
    if drop < min_drop:
        return Finding(
            "loss_not_decreasing",
            "warning",
            N_(
                "{what} went from {first:.4f} to {last:.4f} ({pct:+.1f}%); the model did not learn measurably",
                what=what,
                first=first,
                last=last,
                pct=-100 * drop,
            ),
        )
    return None


def untrained_perplexity(run: Run, ratio: float = 0.5) -> Finding | None:
    """A uniform guess over V tokens has perplexity V; near that, the model has learned nothing."""
    ppl, vocab = _num(run.perplexity.perplexity), run.vocab_size
    if ppl is None or not vocab or not math.isfinite(ppl):
        return None
    if ppl >= ratio * vocab:
        return Finding(
            "untrained_perplexity",
            "warning",
            N_(
                "perplexity {ppl:,.1f} is {ratio:.2f}x the vocabulary size {vocab:,} "
                "(uniform guessing gives {vocab:,}): the model behaves as untrained",
                ppl=ppl,
                ratio=ppl / vocab,
                vocab=vocab,
            ),
        )
    return None


def damaged_files(run: Run) -> Finding | None:
    if run.problems:
        return Finding("damaged_files", "warning", Msg.join(run.problems))
    return None


def validation_rising(run: Run, tolerance: float = 0.02) -> Finding | None:
    val = run.validation.dropna(subset=["val_loss"]) if len(run.validation) else run.validation
    if len(val) < 3:
        return None
    best = val.loc[val["val_loss"].idxmin()]
    last = val.iloc[-1]
    if last["val_loss"] > best["val_loss"] * (1 + tolerance):
        return Finding(
            "validation_rising",
            "warning",
            N_(
                "validation loss rose from its best {best:.4f} (step {best_step}) "
                "to {last:.4f} at step {last_step}: overfitting or instability",
                best=best["val_loss"],
                best_step=int(best["step"]),
                last=last["val_loss"],
                last_step=int(last["step"]),
            ),
        )
    return None


def eval_not_final_checkpoint(run: Run) -> Finding | None:
    if "train" not in run.stages or not run.steps_done:
        return None
    hits = [
        N_(what, step=rec.step)
        for what, rec in (
            ("perplexity was measured on the step-{step} checkpoint", run.perplexity),
            ("the harness was measured on the step-{step} checkpoint", run.harness_timing),
        )
        if rec.step is not None and rec.step != run.steps_done
    ]
    if hits:
        return Finding(
            "eval_not_final_checkpoint",
            "warning",
            N_(
                "{what}, but training reached step {step}",
                what=Msg.join(hits, N_(" and ")),
                step=run.steps_done,
            ),
        )
    return None


def resumed_run(run: Run) -> Finding | None:
    """Restarts are normal on clusters, but a reader must know the curve is stitched from several jobs."""
    if len(run.segments) < 2:
        return None
    parts = [
        N_("segment {segment}: steps {first}–{last}", segment=s["segment"], first=s["first_step"], last=s["last_step"])
        for s in run.segments
    ]
    redone = sum(
        max(0, prev["last_step"] - nxt["first_step"] + 1)
        for prev, nxt in zip(run.segments, run.segments[1:])
        if nxt["first_step"] <= prev["last_step"]
    )
    what = N_("training ran in {n} segments ({parts})", n=len(run.segments), parts=Msg.join(parts))
    if redone:
        what = N_(
            "{what}; {redone} step(s) were trained again after a restart (curves show the later values)",
            what=what,
            redone=redone,
        )
    return Finding("resumed_run", "info", what)


def planned_steps_unknown(run: Run) -> Finding | None:
    if run.imported and "train" in run.stages and run.steps_planned is None:
        return Finding(
            "planned_steps_unknown",
            "warning",
            N_(
                "the {format} source does not record how many steps were planned, so whether the run finished "
                "cannot be told from data ({steps} steps logged); re-import with STEPS=<n> if you know it",
                format=run.imported.format,
                steps=run.steps_done,
            ),
        )
    return None


def import_warnings(run: Run) -> Finding | None:
    warnings = run.imported.warnings
    if warnings:
        return Finding("import_warnings", "warning", N_("the import noted: {notes}", notes=Msg.join(warnings)))
    return None


def all_zero_generative(run: Run, min_items: int = 20) -> Finding | None:
    """A generate_until task scoring exactly 0 on every item (over enough items to tell): the answer extraction
    (regex filter, stop sequences, chat template) is likely broken, not the model."""
    frame = run.harness
    if not len(frame):
        return None
    tasks = frame[frame["is_group"] != True] if "is_group" in frame else frame  # noqa: E712
    zero = []
    for task, rows in tasks.groupby("task"):
        if "output_type" not in rows or (rows["output_type"] != "generate_until").all():
            continue
        values = rows["value"].dropna()
        n = rows["n"].dropna()
        if len(values) and (values == 0).all() and len(n) and n.max() >= min_items:
            zero.append(N_("{task} ({n:,} items)", task=task, n=int(n.max())))
    if not zero:
        return None
    return Finding(
        "all_zero_generative",
        "error",
        N_(
            "{count} generative task(s) scored exactly 0 on every item: {tasks}; the answer extraction (filter "
            "regex, stop sequences, chat template) is likely broken",
            count=len(zero),
            tasks=Msg.join(zero),
        ),
    )


def several_runs_in_source(run: Run) -> Finding | None:
    runs = run.imported.runs if run.imported else []
    if len(runs) < 2:
        return None
    read = next((r.get("name") for r in runs if r.get("read")), "?")
    return Finding(
        "several_runs_in_source",
        "warning",
        N_(
            "the source holds {n} different runs ({names}); this report is of {read} only (VERSION= imports another)",
            n=len(runs),
            names=", ".join(str(r.get("name")) for r in runs),
            read=read,
        ),
    )


def metrics_not_imported(run: Run) -> Finding | None:
    missing = run.imported.not_carried if run.imported else {}
    if not missing:
        return None
    return Finding(
        "metrics_not_imported",
        "warning",
        N_(
            "{n} series the source logged were not carried into the run directory: {names}",
            n=len(missing),
            names=", ".join(f"{k} ({v} rows)" for k, v in missing.items()),
        ),
    )


PEAK_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # train.precision -> the probe's dtype


def suspect_peak(run: Run, max_mfu: float = 0.75, max_spread: float = 0.15, max_load: float = 0.25) -> Finding | None:
    """MFU is only as good as its denominator: a peak probed on a busy host, with unsteady windows or in another
    dtype than training used makes every MFU against it wrong (seed runs showed 56 % and 112 % on a CPU)."""
    from pipeline.report.tables import median_of

    peak, mfu = run.provenance.device_peak, median_of(run, "mfu")
    if not peak or not peak.flops_per_s or mfu is None:
        return None
    reasons = []
    if mfu > max_mfu:
        reasons.append(N_("median MFU {mfu:.1%} is above {limit:.0%} of the measured peak", mfu=mfu, limit=max_mfu))
    spread = peak.get("window_spread")
    if spread is not None and spread > max_spread:
        reasons.append(N_("the probe's timing windows differ by {spread:.0%}", spread=spread))
    load = peak.get("host_load_others")
    if load is not None and load > max_load:
        reasons.append(N_("other processes kept {load:.0%} of the host's cores busy during the probe", load=load))
    trained = PEAK_DTYPES.get(((run.config.get("train") or {}).get("precision")) or "")
    if trained and peak.dtype and peak.dtype != trained:
        reasons.append(N_("the peak was measured in {peak} but training multiplied in {trained}", peak=peak.dtype,
                          trained=trained))  # fmt: skip
    if not reasons:
        return None
    return Finding(
        "suspect_peak",
        "warning",
        N_(
            "the MFU's denominator ({flops:.3e} FLOP/s, {dtype}) is suspect: {reasons}; treat MFU {mfu:.1%} as "
            "unreliable and rerun the train stage on an idle device",
            flops=peak.flops_per_s,
            dtype=peak.dtype,
            reasons=Msg.join(reasons),
            mfu=mfu,
        ),
    )


def device_fallback(run: Run) -> Finding | None:
    """A run that asked for GPUs (train.device: cuda, hpc.gpus_per_node > 0, or auto with NVIDIA devices
    visible) but trained on the CPU: its speed and memory describe the wrong machine."""
    td = run.provenance.train_device
    if run.provenance.imported or "train" not in run.stages:
        return None
    used = (td.used if td else None) or run.done.device
    if not used or not str(used).startswith("cpu"):
        return None
    train, hpc = run.config.get("train") or {}, run.config.get("hpc") or {}
    requested = (td.requested if td else None) or train.get("device") or "auto"
    asked = []
    if requested == "cuda":
        asked.append(N_("train.device is cuda"))
    gpus = int(hpc.get("gpus_per_node") or 0)
    if gpus > 0:
        asked.append(N_("the job asked for {n} GPU(s) per node (hpc.gpus_per_node)", n=gpus))
    if requested == "auto" and td and td.nvidia_visible:
        from pipeline.gpu import seen_summary

        seen = seen_summary(td.nvidia) if td.nvidia else ""
        asked.append(N_("train.device is auto and NVIDIA devices were visible ({seen})", seen=seen or "?"))
    if not asked:
        return None
    reason = td.cuda_unusable_reason if td else None
    return Finding(
        "device_fallback",
        "error",
        N_(
            "training ran on {used} although {asked}; torch could not use CUDA: {reason}",
            used=used,
            asked=Msg.join(asked),
            reason=reason or N_("no reason was recorded"),
        ),
    )


def nccl_socket_fallback(run: Run) -> Finding | None:
    """A multi-node run whose NCCL log says it moved data over TCP sockets, not InfiniBand."""
    from pipeline.train.nccl import uses_sockets

    nodes = int(((run.config.get("hpc") or {}).get("nodes")) or 1)
    nccl = run.provenance.nccl
    if nodes <= 1 or not nccl or not uses_sockets(nccl.model_dump()):
        return None
    socket = (nccl.channels or {}).get("NET/Socket", 0)
    return Finding(
        "nccl_socket_fallback",
        "warning",
        N_(
            "NCCL used {network} between the {nodes} nodes ({channels} channel(s) via NET/Socket): inter-node "
            "traffic went over TCP, not InfiniBand; check that the image has rdma-core/libibverbs and the job sees "
            "/dev/infiniband ({log})",
            network=nccl.network or "Socket",
            nodes=nodes,
            channels=socket,
            log=nccl.log or "logs/nccl-rank0.log",
        ),
    )


def throughput_outlier(run: Run, factor: float = 10.0) -> Finding | None:
    """An interval at least `factor`x below the median throughput, with what the log says happened in it."""
    frame = run.metrics
    if not len(frame) or frame["tokens_per_s"].isna().all():
        return None
    tps = frame["tokens_per_s"]
    median = float(tps.median())
    slow = frame[tps <= median / factor]
    if not len(slow) or median <= 0:
        return None
    notes = [
        N_(
            "step {step}: {tps:,.0f} tokens/s ({event})",
            step=int(r.step),
            tps=float(r.tokens_per_s),
            event=getattr(r, "interval_event", None)
            if isinstance(getattr(r, "interval_event", None), str)
            else N_("the log says nothing about it"),
        )
        for r in slow.head(10).itertuples()
    ]
    return Finding(
        "throughput_outlier",
        "info",
        N_(
            "{n} logged interval(s) at least {factor:.0f}× below the median {median:,.0f} tokens/s: {notes}",
            n=len(slow),
            factor=factor,
            median=median,
            notes=Msg.join(notes),
        ),
    )


def uncommitted_code(run: Run) -> Finding | None:
    git = run.provenance.git
    if git.dirty:
        return Finding(
            "uncommitted_code",
            "info",
            N_(
                "the code had uncommitted changes (diff sha256 {diff}); commit {commit} alone does not reproduce "
                "this run",
                diff=str(git.diff_sha256)[:12],
                commit=str(git.commit)[:10],
            ),
        )
    return None


def at_chance(run: Run, z: float = 2.0) -> Finding | None:
    """A multiple-choice score within `z` standard errors of guessing says nothing about the model."""
    import pandas as pd

    rows = run.harness.dropna(subset=["chance", "value"]) if len(run.harness) else run.harness
    hits = []
    for r in rows.itertuples():
        margin = z * r.stderr if pd.notna(r.stderr) else 0.0
        if r.value <= r.chance + margin:
            hits.append(
                N_(
                    "{task} {metric} {value:.4f} vs chance {chance:.4f} (±{margin:.4f})",
                    task=r.task,
                    metric=r.metric,
                    value=r.value,
                    chance=r.chance,
                    margin=margin,
                )
            )
    if hits:
        return Finding(
            "at_chance", "warning", N_("at chance level (within 2 stderr or below): {hits}", hits=Msg.join(hits))
        )
    return None


def subset_only(run: Run) -> Finding | None:
    frame = run.harness.dropna(subset=["n", "n_original"]) if len(run.harness) else run.harness
    partial = frame[frame["n"] < frame["n_original"]].drop_duplicates("task") if len(frame) else frame
    if len(partial):
        parts = [
            N_("{task} {n} of {total}", task=r.task, n=int(r.n), total=int(r.n_original)) for r in partial.itertuples()
        ]
        return Finding(
            "subset_only",
            "warning",
            N_("evaluated on a subset (limit): {parts}; not comparable to full-set scores", parts=Msg.join(parts)),
        )
    return None


def _bench_ok(run: Run) -> dict[str, dict]:
    return {n: v for n, v in run.bench.variants.items() if v.get("status") == "ok"}


def _close(a, b, rel: float) -> bool:
    return a is not None and b is not None and abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def identical_measurements(run: Run, rel: float = 0.005) -> Finding | None:
    """Variants with different settings but the same time and memory: the setting probably never applied."""
    ok, pairs = _bench_ok(run), []
    names = list(ok)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            va, vb = ok[a], ok[b]
            if (
                va["requested"] != vb["requested"]
                and _close(va["step_time_median_s"], vb["step_time_median_s"], rel)
                and _close(va["mem_peak_allocated_gib"], vb["mem_peak_allocated_gib"], rel)
            ):
                pairs.append(
                    N_(
                        "{a} and {b} ({ta:.2f} vs {tb:.2f} ms, {ma:.3f} vs {mb:.3f} GiB)",
                        a=a,
                        b=b,
                        ta=va["step_time_median_s"] * 1e3,
                        tb=vb["step_time_median_s"] * 1e3,
                        ma=va["mem_peak_allocated_gib"],
                        mb=vb["mem_peak_allocated_gib"],
                    )
                )
    if pairs:
        return Finding(
            "identical_measurements",
            "warning",
            N_(
                "different settings, same time and memory within {rel:.1%}: {pairs} — check that the setting "
                "reached the model (see resolved settings)",
                rel=rel,
                pairs=Msg.join(pairs),
            ),
        )
    return None


def qlora_not_smaller(run: Run) -> Finding | None:
    ok = _bench_ok(run)
    lora = {n: v for n, v in ok.items() if v["requested"]["finetune"] == "lora"}
    qlora = {n: v for n, v in ok.items() if v["requested"]["finetune"] == "qlora"}
    hits = [
        N_(
            "{q} {mq:.3f} GiB >= {lo} {ml:.3f} GiB",
            q=q,
            mq=vq["mem_peak_allocated_gib"],
            lo=lo,
            ml=vl["mem_peak_allocated_gib"],
        )
        for q, vq in qlora.items()
        for lo, vl in lora.items()
        if vq["requested"]["precision"] == vl["requested"]["precision"]
        and vq["mem_peak_allocated_gib"] >= vl["mem_peak_allocated_gib"]
    ]
    if hits:
        kind = next(iter(qlora.values()))["mem_kind"]
        why = (
            N_("CPU peak RSS is dominated by the libraries loaded, not the weights")
            if kind == "cpu_peak_rss"
            else N_("4-bit weights should need about a quarter of bf16 memory")
        )
        return Finding(
            "qlora_not_smaller",
            "warning",
            N_("QLoRA peak memory is not below LoRA: {hits} ({why})", hits=Msg.join(hits), why=why),
        )
    return None


def _welch_from_summary(a: dict, b: dict, n_a: int | None, n_b: int | None):
    """Welch's t-test of two variants' mean step times from their means, standard deviations and repeat counts."""
    from scipy import stats as sps

    if not n_a or not n_b or n_a < 2 or n_b < 2:
        return None
    sa, sb = a["step_time_median_s_std"], b["step_time_median_s_std"]
    if not sa and not sb:
        return 1.0 if a["step_time_median_s"] == b["step_time_median_s"] else 0.0
    return float(sps.ttest_ind_from_stats(a["step_time_median_s"], sa, n_a, b["step_time_median_s"], sb, n_b,
                                          equal_var=False).pvalue)  # fmt: skip


def within_noise(run: Run, alpha: float = 0.05) -> Finding | None:
    """A variant whose mean step time Welch's t-test over the repeats cannot tell from the baseline's (p ≥ alpha)."""
    ok, base = _bench_ok(run), run.bench.baseline
    if base not in ok:
        return None
    b = ok[base]
    repeats = run.bench.repeats
    hits = []
    for n, v in ok.items():
        if n == base:
            continue
        p = _welch_from_summary(v, b, v.get("ok") or repeats, b.get("ok") or repeats)
        if p is None or p < alpha:
            continue
        hits.append(
            N_(
                "{name} {t:.2f}±{s:.2f} ms vs {tb:.2f}±{sb:.2f} ms (Welch p = {p:.2g})",
                name=n,
                t=v["step_time_median_s"] * 1e3,
                s=v["step_time_median_s_std"] * 1e3,
                tb=b["step_time_median_s"] * 1e3,
                sb=b["step_time_median_s_std"] * 1e3,
                p=p,
            )
        )
    if hits:
        return Finding(
            "within_noise",
            "info",
            N_(
                "step time not shown to differ from {base} (Welch's t-test over the repeats, p ≥ {alpha}): {hits}",
                base=base,
                alpha=alpha,
                hits=Msg.join(hits),
            ),
        )
    return None


def resolved_mismatch(run: Run) -> Finding | None:
    hits = [f"{n}: {m}" for n, v in _bench_ok(run).items() for m in v.get("mismatches", [])]
    if hits:
        return Finding(
            "resolved_mismatch", "error", N_("a variant did not get what it asked for: {hits}", hits=Msg.join(hits))
        )
    return None


def bench_failures(run: Run) -> Finding | None:
    variants = run.bench.variants
    failed = [f"{n} ({'; '.join(v['errors'])})" for n, v in variants.items() if v["status"] == "failed"]
    if failed:
        return Finding("bench_failures", "warning", N_("variants failed: {failed}", failed=Msg.join(failed)))
    return None


def no_op_change(base: Run, run: Run) -> Finding | None:
    """The config differs from the baseline but training did not (identical train hash or loss curve)."""
    diff = compare.config_diff(base.config, run.config)
    why = compare.no_op(base, run, diff)
    if why:
        return Finding(
            "no_op_change",
            "warning",
            N_(
                "{n} config key(s) differ from {baseline} but {why}; any difference in results is not caused by "
                "the change",
                n=len(diff),
                baseline=base.name,
                why=why,
            ),
        )
    return None


def not_comparable(base: Run, run: Run) -> Finding | None:
    guards = compare.guards(base, run)
    if guards:
        parts = [N_("{what} ({old} → {new})", what=g.what, old=g.baseline, new=g.run) for g in guards]
        return Finding(
            "not_comparable",
            "warning",
            N_("differs from the baseline in {parts}: compare numbers with care", parts=Msg.join(parts)),
        )
    return None


def expectation_failed(run: Run, baseline: Run | None = None) -> Finding | None:
    """A goal declared under `expect:` that the data does not meet, or that nothing measured."""
    from pipeline.report.expect import check

    lines = run.config.get("expect") or []
    if not lines:
        return None
    outcomes = check(run, baseline, lines)
    failed = [o for o in outcomes if o.passed is False]
    unmeasured = [o for o in outcomes if o.passed is None]
    parts = [N_("{text} (measured {measured:.4g}, target {target:.4g})", text=o.text, measured=o.measured,
                target=o.target) for o in failed]  # fmt: skip
    parts += [N_("{text} (not measured)", text=o.text) for o in unmeasured]
    if not parts:
        return None
    return Finding(
        "expectation_failed",
        "warning",
        N_(
            "{n} of {total} declared expectation(s) not met: {parts}",
            n=len(parts),
            total=len(outcomes),
            parts=Msg.join(parts),
        ),  # fmt: skip
    )


expectation_failed.reads_baseline = True  # `baseline.<metric>` in an expectation


@dataclass(frozen=True)
class Rule:
    """One entry of the check table: the function, what it checks (for "No check fired (rules: …)"), and
    whether it compares with the baseline run (`func(baseline, run)`, skipped without a baseline)."""

    func: Callable[..., Finding | None]
    description: Msg
    baseline: bool = False

    @property
    def __name__(self) -> str:  # a rule reads like the function it wraps
        return self.func.__name__

    def __call__(self, run: Run, baseline: Run | None = None) -> Finding | None:
        if self.baseline:
            return None if baseline is None else self.func(baseline, run)
        if getattr(self.func, "reads_baseline", False):  # runs without one, reads it when there is one
            return self.func(run, baseline)
        return self.func(run)


RULES: list[Rule] = [
    Rule(run_incomplete, N_("run completeness")),
    Rule(command_failed, N_("training command exit code")),
    Rule(planned_steps_unknown, N_("planned steps recorded")),
    Rule(nonfinite_loss, N_("non-finite loss")),
    Rule(loss_not_decreasing, N_("loss decrease")),
    Rule(untrained_perplexity, N_("untrained perplexity")),
    Rule(validation_rising, N_("rising validation loss")),
    Rule(eval_not_final_checkpoint, N_("evaluated checkpoint")),
    Rule(resumed_run, N_("restarts")),
    Rule(import_warnings, N_("import warnings")),
    Rule(several_runs_in_source, N_("several runs in the source")),
    Rule(metrics_not_imported, N_("series not imported")),
    Rule(throughput_outlier, N_("throughput outliers")),
    Rule(suspect_peak, N_("MFU peak")),
    Rule(device_fallback, N_("training device")),
    Rule(nccl_socket_fallback, N_("NCCL transport")),
    Rule(all_zero_generative, N_("generative tasks scoring 0 everywhere")),
    Rule(at_chance, N_("scores at chance")),
    Rule(subset_only, N_("evaluation subsets")),
    Rule(resolved_mismatch, N_("resolved bench settings")),
    Rule(identical_measurements, N_("identical bench measurements")),
    Rule(qlora_not_smaller, N_("QLoRA memory")),
    Rule(bench_failures, N_("bench failures")),
    Rule(within_noise, N_("bench noise (Welch)")),
    Rule(expectation_failed, N_("declared expectations")),
    Rule(damaged_files, N_("damaged files")),
    Rule(uncommitted_code, N_("uncommitted code")),
    Rule(no_op_change, N_("no-op change against the baseline"), baseline=True),
    Rule(not_comparable, N_("comparability with the baseline"), baseline=True),
]


def applicable(rules: list[Rule], baseline: Run | None) -> list[Rule]:
    """The rules that ran: the baseline rules only when there is a baseline."""
    return [r for r in rules if baseline is not None or not r.baseline]


def run_checks(run: Run, rules=None, *, baseline: Run | None = None) -> list[Finding]:
    table = [r if isinstance(r, Rule) else Rule(r, Msg(r.__name__)) for r in (rules or RULES)]
    found = [f for rule in table if (f := rule(run, baseline)) is not None]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])
