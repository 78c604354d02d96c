"""Train stage: resolved config + prepared data -> `train/metrics.jsonl`, `train/validation.jsonl`,
`checkpoints/<step>/`, `train/DONE`.

Rerunning resumes from the newest complete checkpoint made with the same train inputs; if only the length
(train.steps / train.epochs) grew, it continues from there (pipeline/train/lifecycle.py); if the inputs
changed otherwise, the old outputs are moved to `archive/` (never deleted) and training starts over.
Early stopping, the best checkpoint and the tracker mirror are hooks called from `fit` (`after_validation`,
`to_mirror`), outside the step itself.

>>> run_train(load_resolved(Path("runs/smoke")), Path("runs/smoke"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline import records
from pipeline.config.resolve import config_hash, stage_hash, to_yaml
from pipeline.config.schema import Experiment
from pipeline.data.prepare import load_tokens
from pipeline.evaluate.scoring import autocast_for, score
from pipeline.rundir import RunDir
from pipeline.train import checkpoint as ckpt
from pipeline.train.batches import BatchPlan, DeviceBatches, as_sequences
from pipeline.train.flops import achieved_flops, counted_flops_per_token, flops_per_token, mfu
from pipeline.train.lifecycle import Lifecycle
from pipeline.train.metrics_log import JsonlLog, utc_now
from pipeline.train.optim import build_optimizer, build_scheduler
from pipeline.train.peak import HostLoad
from pipeline.train.runtime import Runtime, archive_stale_outputs, peak_memory_gib, seed_everything

log = logging.getLogger(__name__)


@dataclass
class Interval:
    """Accumulates device-side values between log steps so the hot loop never waits for the GPU."""

    start_time: float = field(default_factory=time.perf_counter)
    steps: int = 0
    data_time: float = 0.0
    load: HostLoad = field(default_factory=lambda: HostLoad().__enter__())  # other processes' share of the cores

    def host_load(self) -> float | None:
        self.load.__exit__(None, None, None)
        return None if self.load.others is None else round(self.load.others, 4)


class Trainer:
    """The model, optimizer and step of the train stage.

    `Trainer(cfg, rt, vocab_size, eos_id)` builds what one optimizer step needs (enough for `train_step`,
    e.g. benchmarks/train_throughput.py on random batches); `Trainer.from_run(cfg, run, rt, peak)` adds the
    run directory's tokenizer, token streams, batch plan and logs, and is what the train stage uses.
    """

    def __init__(
        self,
        cfg: Experiment,
        rt: Runtime,
        vocab_size: int,
        eos_id: int | None,
        peak: dict | None = None,
        total_steps: int | None = None,
    ):
        from pipeline.model import build_model

        self.cfg, self.rt = cfg, rt
        tc = cfg.train
        seed_everything(tc.seed)  # before the model: its initial weights depend only on the seed
        self.model = build_model(cfg.model, vocab_size, eos_id).to(rt.device)
        self.total_steps = total_steps or tc.steps
        self.optimizer = build_optimizer(self.model, tc, rt.device)
        self.scheduler = build_scheduler(self.optimizer, tc, self.total_steps)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=tc.precision == "fp16")
        self.step_model = rt.wrap(torch.compile(self.model) if tc.compile else self.model)
        self.stop_requested = False
        self.custom = bool(cfg.model.custom)
        self.continuations: list[dict] = []  # earlier segments of a run continued with a longer length
        self.mirror = None
        self.flops_per_token = (
            counted_flops_per_token(self.model, cfg.seq_len, vocab_size, rt.device)
            if cfg.model.custom  # no formula for an architecture we do not know: torch counts it
            else flops_per_token(self.model, cfg.model.layers, cfg.model.dim, cfg.seq_len)
        )
        # MFU divides by the peak of every process's device (tokens/s counts all of them).
        peak = peak or {}
        self.peak = (peak.get("flops_per_s") or 0) * rt.world_size or None
        self.datasheet = (peak.get("datasheet_flops_per_s") or 0) * rt.world_size or None

    @classmethod
    def from_run(cls, cfg: Experiment, run: RunDir, rt: Runtime, peak: dict | None = None) -> Trainer:
        """The train stage's Trainer: the prepared tokenizer and token streams of `run`, its batch plan and logs."""
        from transformers import AutoTokenizer

        tc = cfg.train
        tokenizer = AutoTokenizer.from_pretrained(run.prepared / "tokenizer")
        train_seq = as_sequences(load_tokens(run.root, "train", random_access=True), cfg.seq_len)
        val_seq = as_sequences(load_tokens(run.root, "validation"), cfg.seq_len)
        plan = BatchPlan(len(train_seq), tc.batch_size, tc.grad_accum, rt.world_size, rt.rank)
        if plan.steps_per_epoch < 1:
            from pipeline.errors import DataError

            raise DataError(
                f"train.batch_size: {len(train_seq)} training sequences of {cfg.seq_len} tokens "
                f"cannot fill one step of {plan.sequences_per_step} sequences"
            )
        total_steps = tc.steps or tc.epochs * plan.steps_per_epoch
        trainer = cls(cfg, rt, len(tokenizer), tokenizer.eos_token_id, peak, total_steps)
        trainer.run, trainer.tokenizer, trainer.plan = run, tokenizer, plan
        trainer.train_seq, trainer.val_seq = train_seq, val_seq
        trainer.metrics = JsonlLog(run.metrics, enabled=rt.is_main)
        trainer.validation = JsonlLog(run.validation, enabled=rt.is_main)
        trainer.tokens_per_step = plan.sequences_per_step * cfg.seq_len
        return trainer

    # ------------------------------------------------------------------ state
    def resume(self, train_hash: str) -> int:
        from safetensors.torch import load_file

        self.segment, self.steps_lost, self.previous_last_seen = 0, 0, None
        self.lifecycle = Lifecycle(self.cfg.train.early_stopping, self.cfg.train.keep_best)
        while True:  # the newest checkpoint whose files verify and load (damaged ones are moved aside)
            latest = ckpt.newest_intact(self.run, log)
            if latest is None:
                break
            try:
                state = ckpt.load_train_state(latest)
                weights = None if self.custom else load_file(latest / "model.safetensors", device=str(self.rt.device))
                break
            except Exception as exc:  # noqa: BLE001 - unreadable despite its checksums: treat as damaged
                aside = latest.with_name(latest.name + ".damaged")
                os.replace(latest, aside)
                (aside / "WHY.txt").write_text(f"cannot be loaded ({type(exc).__name__})\n", encoding="utf-8")
        self.repairs = ckpt.damage_notes(self.run) if self.rt.is_main else []
        if self.repairs and latest is not None:
            self.repairs.append(f"training resumed from checkpoints/{latest.name}, the newest intact checkpoint")
        if latest is None:  # killed before the first checkpoint: start over, without the lost steps' lines
            self.repairs += self.metrics.truncate_after(0) + self.validation.truncate_after(-1)
            return 0
        if self.custom:
            from pipeline.model import load_custom_weights

            load_custom_weights(self.model, latest, self.rt.device)
        else:
            check_state_keys(self.model, weights, latest)
            self.model.load_state_dict(weights, strict=False)  # tied weights are stored once (checked above)
            if self.cfg.model.tie_embeddings:
                self.model.tie_weights()
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # The schedule for this run's length: the same values on a plain resume; on a continuation (a longer
        # train.steps) the new length's schedule from this step on.
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * factor(self.scheduler.last_epoch)
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        step = state["step"]
        last_record = (self.metrics.last_record() or {}) if self.rt.is_main else {}
        last, self.previous_last_seen = last_record.get("step"), last_record.get("time_utc")
        # Steps the interrupted launch trained past its last checkpoint are trained again: time lost to the restart.
        self.steps_lost = max(0, int(last) - step) if isinstance(last, (int, float)) else 0
        self.repairs += self.metrics.truncate_after(step) + self.validation.truncate_after(step)
        # Each resume starts a segment: the report keeps its first (warm-up) interval out of throughput.
        self.segment = int((self.metrics.last_record() or {}).get("segment", 0)) + 1 if self.rt.is_main else 0
        # Every rank replays the same passes (rank 0 may be cutting the file meanwhile: only steps <= `step` count),
        # so all ranks take the same early-stopping decision.
        passes = [r for r in self.validation.records() if isinstance(r.get("step"), int) and r["step"] <= step]
        self.lifecycle = Lifecycle.replayed(self.cfg, passes)
        log.info("resumed from %s (step %d of %d)", latest, step, self.total_steps)
        return step

    def save(self, step: int, train_hash: str, name: str | None = None) -> None:
        if not self.rt.is_main:
            return
        self.metrics.sync()  # the logs' lines up to this checkpoint are on disk before it is
        self.validation.sync()
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_hash": train_hash,
            "continuation_hash": getattr(self, "continuation_hash", None),
            "data_position": {"step": step, "epoch": step / self.plan.steps_per_epoch},
        }
        ckpt.save_checkpoint(
            self.run, step, self.model, self.tokenizer, state, to_yaml(self.cfg), self.cfg.train.keep_checkpoints, name
        )

    # ------------------------------------------------------------------ steps
    def train_step(self, micro_batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tc = self.cfg.train
        loss_sum = torch.zeros((), device=self.rt.device)
        for i, batch in enumerate(micro_batches):
            with self.rt.no_sync(self.step_model, last=i == len(micro_batches) - 1):
                with autocast_for(self.rt.device, tc.precision):
                    loss = self.step_model(input_ids=batch, labels=batch).loss / len(micro_batches)
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip if tc.clip > 0 else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum, grad_norm

    def validate(self, step: int) -> dict:
        tc = self.cfg.train
        rows = self.val_seq[: tc.eval_batches * tc.batch_size]
        batches = (
            torch.from_numpy(rows[i : i + tc.batch_size].astype("int64")) for i in range(0, len(rows), tc.batch_size)
        )
        result = score(self.model, batches, self.rt.device, tc.precision)
        record = {
            "step": step,
            "epoch": round(step / self.plan.steps_per_epoch, 4),
            "val_loss": result["loss"],
            "val_perplexity": result["perplexity"],
            "val_accuracy": result["accuracy"],
            "val_tokens": result["tokens"],
            "time_utc": utc_now(),
        }
        self.validation.append(record)
        return record

    def log_step(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor, iv: Interval) -> dict:
        loss = self.rt.mean_across_ranks(loss)  # each rank saw its share of the global batch
        self.rt.synchronize()
        elapsed = time.perf_counter() - iv.start_time
        tokens_per_s = iv.steps * self.tokens_per_step / elapsed if elapsed > 0 else None
        flops = achieved_flops(self.flops_per_token, tokens_per_s) if tokens_per_s else None
        record = {
            "step": step,
            "epoch": round(step / self.plan.steps_per_epoch, 4),
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "lr": self.lr_applied,
            "tokens": step * self.tokens_per_step,
            "tokens_per_s": tokens_per_s,
            "flops_per_token": self.flops_per_token,
            "flops_per_s": flops,
            "mfu": mfu(flops, self.peak) if flops else None,
            "mfu_datasheet": mfu(flops, self.datasheet) if flops else None,
            "step_time_s": elapsed / max(iv.steps, 1),
            "data_time_s": iv.data_time / max(iv.steps, 1),
            "mem_peak_gib": peak_memory_gib(self.rt.device),
            "host_load": iv.host_load(),
            "segment": self.segment,
            "time_utc": utc_now(),
        }
        self.metrics.append(record)
        return record

    # ------------------------------------------------------------------ lifecycle hooks
    def after_validation(self, step: int, val: dict, train_hash: str) -> str | None:
        """Mirror the pass, keep the best checkpoint (train.keep_best); why training stops here
        (train.early_stopping), or None."""
        self.to_mirror(val)
        save_best, stop_why = self.lifecycle.observe(val)
        if save_best and self.rt.is_main:
            from pipeline.train.lifecycle import BEST, write_best_info

            self.save(step, train_hash, name=BEST)
            write_best_info(self.run.checkpoints / BEST, self.lifecycle.best_info(step))
        return stop_why

    def open_mirror(self) -> None:
        if self.cfg.train.mirror and self.rt.is_main:
            from pipeline.train.mirror import Mirror

            self.mirror = Mirror(self.cfg.train.mirror, self.run.root, self.cfg.name, self.total_steps,
                                 {"train": self.cfg.train.model_dump(mode="json")})  # fmt: skip

    def to_mirror(self, record: dict) -> None:
        if self.mirror is not None:
            self.mirror.log(record)

    # ------------------------------------------------------------------ loop
    def fit(self, train_hash: str) -> dict:
        steps = self.fit_steps(train_hash)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def fit_steps(self, train_hash: str):
        """The train stage's loop, one optimizer step per `next()` (it yields the step done, and returns the
        summary): benchmarks/train_throughput.py times each step of this very loop against a bare one."""
        tc = self.cfg.train
        start = self.resume(train_hash)
        if self.rt.is_main and start:
            from pipeline.provenance import note_launch

            note_launch(self.run, "train", self.previous_last_seen, resumed_from=start, steps_lost=self.steps_lost)
        if self.rt.is_main:  # written first, so a run killed early still says how long it was meant to be
            records.PLAN.write(
                self.run.root,
                {
                    "steps_planned": self.total_steps,
                    "steps_per_epoch": self.plan.steps_per_epoch,
                    "tokens_per_step": self.tokens_per_step,
                    "train_hash": train_hash,
                    **({"continuations": self.continuations} if self.continuations else {}),
                },
            )
            self.open_mirror()
        batches = DeviceBatches(self.train_seq, self.plan, tc.seed, self.rt.device)
        bar = tqdm(
            total=self.total_steps,
            initial=start,
            desc="train",
            unit="step",
            disable=not self.rt.is_main or None,
            dynamic_ncols=True,
        )
        status, iv, fault_at = "completed", Interval(), int(os.environ.get("LABNOTE_FAULT_AT_STEP", "0"))
        if start == 0:  # the untrained baseline: a loss near ln(vocab) shows the pipeline is sane
            self.to_mirror(self.validate(0))
        self.step_model.train()
        step, t_data = start, time.perf_counter()
        for index, micro in batches.steps(start, self.total_steps):
            iv.data_time += time.perf_counter() - t_data
            step = index + 1
            self.lr_applied = self.optimizer.param_groups[0]["lr"]  # a Python float: reading it costs no sync
            loss, grad_norm = self.train_step(micro)
            iv.steps += 1
            bar.update(1)
            last = step == self.total_steps
            if step % tc.log_every == 0 or last:
                rec = self.log_step(step, loss, grad_norm, iv)
                self.to_mirror(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:.0f}")
                if bar.disable:
                    log.info(
                        "step %d/%d loss %.4f lr %.2e %.0f tok/s",
                        step,
                        self.total_steps,
                        rec["loss"],
                        rec["lr"],
                        rec["tokens_per_s"],
                    )
                iv = Interval()
                if not math.isfinite(rec["loss"]) and tc.stop_on_nonfinite:
                    status = "stopped_nonfinite"
            if step % tc.eval_every == 0 or last or status != "completed":
                val = self.validate(step)
                log.info("step %d validation loss %.4f ppl %.2f", step, val["val_loss"], val["val_perplexity"])
                stop_why = self.after_validation(step, val, train_hash)
                if stop_why and status == "completed":
                    status, self.stop_why = "early_stopped", stop_why
            if step == fault_at:  # test hook: a real signal to this process (KILL: hard kill, TERM: preemption)
                os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("LABNOTE_FAULT_SIGNAL", "KILL")))
            if step % tc.checkpoint_every == 0 or last or status != "completed" or self.stop_requested:
                self.save(step, train_hash)
            if status != "completed" or self.stop_requested:
                break
            yield step
            t_data = time.perf_counter()
        bar.close()
        if self.mirror is not None:
            self.mirror.close(exit_code=0 if status in ("completed", "early_stopped") else 1)
        if self.stop_requested:
            status = "interrupted"
        return {
            "status": status,
            **({"status_why": self.stop_why} if status == "early_stopped" else {}),
            **({"continuations": self.continuations} if self.continuations else {}),
            "steps_done": step,
            "steps_planned": self.total_steps,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "tokens_per_step": self.tokens_per_step,
            "train_hash": train_hash,
            "resumed_from": start or None,
            **({"repairs": self.repairs} if self.repairs else {}),
        }


def check_state_keys(model, weights: dict, checkpoint: Path) -> None:
    """A checkpoint must hold every tensor the model has, and no others: `load_state_dict(strict=False)` would
    otherwise resume silently with a layer at its initial weights. Tied weights are stored once."""
    from pipeline.errors import UserError

    expected = set(model.state_dict())
    tied = {k for k in expected if k not in weights and _is_tied(model, k)}
    missing, unexpected = sorted(expected - set(weights) - tied), sorted(set(weights) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            more = ", …" if len(missing) > 3 else ""
            parts.append(f"missing {len(missing)} tensor(s) the model has ({', '.join(missing[:3])}{more})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensor(s) the model does not have ({', '.join(unexpected[:3])})")
        what = "; ".join(parts)
        raise UserError(
            f"{checkpoint}/model.safetensors: does not match the model ({what}); the model config changed without "
            f"the train inputs changing? Move the checkpoint aside (or `make clean EXP=<exp>`) to train afresh"
        )


def _is_tied(model, key: str) -> bool:
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return out is not None and key.endswith("lm_head.weight") and out.weight is model.get_input_embeddings().weight


def device_peak(run: RunDir, rt: Runtime, precision: str) -> dict:
    """The device's measured matmul rate in the dtype training multiplies in (and the datasheet figure), once
    per train run, into provenance."""
    from pipeline.provenance import record_device_peak
    from pipeline.train.peak import TRAINING_DTYPES, datasheet_peak, measure_matmul_peak

    seconds = float(os.environ.get("LABNOTE_PEAK_SECONDS", "0") or 0) or None
    peak = measure_matmul_peak(rt.device, TRAINING_DTYPES[precision], seconds=seconds)
    gpu = rt.device.type == "cuda"
    peak["datasheet_flops_per_s"] = datasheet_peak(peak["name"]) if gpu else None
    peak["datasheet_dtype"] = "bfloat16 dense" if gpu else None
    record_device_peak(run, peak)
    return peak


class EnergyMeter:
    """The GPU's energy counter (NVML, the device matched by UUID) across training, and NVML's view of this
    process's memory at the end; nothing on a CPU or where NVML is missing."""

    def __init__(self, rt: Runtime):
        self.nv = self.handle = self.start = None
        if rt.device.type != "cuda":
            return
        from pipeline import gpu

        self.nv = gpu.nvml()
        self.handle = gpu.nvml_handle(
            self.nv, gpu.torch_uuid(rt.device.index if rt.device.index is not None else torch.cuda.current_device())
        )
        self.start = gpu.energy_mj(self.nv, self.handle) if self.handle is not None else None

    def read(self) -> dict:
        if self.handle is None:
            return {}
        from pipeline import gpu

        end = gpu.energy_mj(self.nv, self.handle)
        return {
            "energy_j": (end - self.start) / 1000 if end is not None and self.start is not None else None,
            "nvml_process_mem_gib": gpu.process_memory_gib(self.nv, self.handle),
        }


def run_train(cfg: Experiment, run_dir: Path) -> Path:
    run = RunDir(run_dir)
    train_hash = stage_hash(run_dir, "train") or config_hash(cfg)
    rt = Runtime.create(cfg.train.device, run.root)  # a `cuda` that cannot work stops here, before any work
    if rt.is_main:
        from pipeline.provenance import record_fact
        from pipeline.train.runtime import device_choice

        choice = device_choice(cfg.train.device, rt.device, rt.world_size)
        record_fact(
            run, "train_device", {**choice, "hpc_nodes": cfg.hpc.nodes, "hpc_gpus_per_node": cfg.hpc.gpus_per_node}
        )
        from pipeline.stages import continuation_hash
        from pipeline.train.lifecycle import carried_continuations, continuation

        length_free = continuation_hash(cfg)
        continued = continuation(run, cfg, train_hash, length_free)
        if continued is None:
            archive_stale_outputs(run, train_hash)
            continued = carried_continuations(run, train_hash)
        else:
            log.info("train.steps/epochs raised: continuing from the finished run's last checkpoint")
    rt.barrier()  # other ranks must not look for checkpoints while rank 0 moves stale ones away
    # Before the model: the GEMM needs free device memory.
    peak = device_peak(run, rt, cfg.train.precision) if rt.is_main else None
    trainer = Trainer.from_run(cfg, run, rt, peak)
    if rt.is_main:
        trainer.continuation_hash, trainer.continuations = length_free, continued
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(trainer, "stop_requested", True))
    energy = EnergyMeter(rt) if rt.is_main else None
    try:
        summary = trainer.fit(train_hash)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if energy is not None:
        summary.update(energy.read())
    if rt.is_main and rt.nccl_log is not None:
        from pipeline.provenance import record_fact
        from pipeline.train.nccl import read_nccl_log

        nccl = read_nccl_log(rt.nccl_log)
        if nccl is not None:
            record_fact(run, "nccl", nccl)
            summary["nccl_network"] = nccl.get("network")
    from pipeline.model import parameter_counts

    summary.update(
        parameters=parameter_counts(trainer.model),
        device=str(rt.device),
        world_size=rt.world_size,
        flops_per_token=trainer.flops_per_token,
        device_peak=peak,
    )
    if rt.is_main and summary["status"] != "interrupted":
        records.TRAIN_DONE.write(run.root, summary)
        records.cache_logs(run.root)
    rt.close()
    if summary["status"] == "interrupted":
        raise SystemExit(143)  # SIGTERM (scheduler time limit / preemption): checkpoint saved, rerun resumes
    return run.train
