"""The stage table: every stage of a run, stated once.

The CLI (`python -m pipeline <stage>`), the stamps `resolve` writes, the Make rules (`pipeline/stages.mk`,
generated from this table), the run-directory layout and the report's notion of which stages a run has all
read `STAGES`. A stage is a function `run_<stage>(cfg, run_dir)` that reads the resolved config and the run
directory and writes into its own output folder.

Adding a stage: one `Stage(...)` entry below, plus its module with `run_<name>`; then `make stages.mk`.

>>> [s.name for s in STAGES]
['prepare', 'train', 'eval', 'bench', 'report']
>>> STAGE["train"].needs, STAGE["train"].done
(('prepare',), 'train/DONE')
>>> active_stages({"stages": None, "bench": {"variants": []}, "imported": None})
['prepare', 'train', 'eval', 'bench']

A `train.command` trains on its own data: no prepare, and eval only when it names a checkpoint.

>>> active_stages({"stages": None, "bench": None, "imported": None, "train": {"command": "python t.py"}})
['train']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Inputs = Callable[[Any, dict, dict], dict]


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    run: str  # "module:function", called as function(cfg, run_dir)
    output: str  # its folder in runs/<EXP>/ (the report's is reports/<EXP>/)
    inputs: Inputs  # (cfg, config as a dict, hashes of earlier stages) -> what its stamp hashes
    needs: tuple[str, ...] = ()  # stages whose outputs it cannot run without (always prerequisites)
    after: tuple[str, ...] = ()  # stages whose outputs it reads when they are part of the run
    default: bool = True  # in the default stage list (bench: only when the config has a bench: section)
    make_command: str = "$(RUN_PY) -m pipeline {name}"  # the Make recipe, before the run directory
    code: tuple[str, ...] = field(default=())  # files whose edits rerun it (others: `make clean`)
    command_run: str | None = None  # "module:function" instead of `run` when the experiment gives train.command

    @property
    def done(self) -> str:
        """The marker Make waits for, relative to the run directory."""
        return f"{self.output}/DONE"

    def function(self, cfg=None) -> Callable:
        target = self.command_run if self.command_run and cfg is not None and cfg.train.command else self.run
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    def needs_for(self, config: dict) -> tuple[str, ...]:
        """`needs`, except that a train.command prepares nothing for it to need."""
        return () if self.command_run and _command(config) else self.needs


# --------------------------------------------------------------------------- what each stamp hashes
# The dicts below are exactly what earlier versions hashed, so upgrading labnote reruns nothing.
def _prepare_inputs(cfg, d: dict, _h: dict) -> dict:
    from pipeline.config.resolve import data_fingerprint

    data = {k: v for k, v in d["data"].items() if k != "seq_len"}  # the token stream does not depend on it
    return {"data": data, "fingerprint": data_fingerprint(cfg)}


# Keys added later are hashed only when set, so a config that does not use them keeps its old hash; the mirror
# writes copies of the metrics and changes no result, so it is never hashed.
_UNHASHED_UNSET = {"model": ("custom",), "train": ("early_stopping", "keep_best", "command", "logs", "checkpoint")}
_NEVER_HASHED = {"train": ("mirror",)}


def _hashed(d: dict, section: str) -> dict:
    unset = _UNHASHED_UNSET.get(section, ())
    return {k: v for k, v in d[section].items()
            if k not in _NEVER_HASHED.get(section, ()) and not (k in unset and v is None)}  # fmt: skip


def _train_inputs(cfg, d: dict, h: dict) -> dict:
    if cfg.train.command:  # the command as it runs, with its placeholders' values; no model or data of ours
        from pipeline.train.external import Expanded

        return {"train": _hashed(d, "train"), "command": Expanded(cfg).stamp()}
    return {"prepare": h["prepare"], "model": _hashed(d, "model"), "train": _hashed(d, "train"),
            "seq_len": cfg.seq_len}  # fmt: skip


LENGTH_KEYS = ("steps", "epochs")  # raising only these continues a finished run (pipeline/train/lifecycle.py)


def continuation_hash(cfg) -> str:
    """The train inputs without the planned length: equal for two configs that differ only in train.steps /
    train.epochs, so the longer one continues the shorter one's checkpoints instead of starting over."""
    from pipeline.config.resolve import digest, to_dict

    d = to_dict(cfg)
    inputs = _train_inputs(cfg, d, {"prepare": stage_hashes(cfg)["prepare"]})
    inputs["train"] = {k: v for k, v in inputs["train"].items() if k not in LENGTH_KEYS}
    return digest(inputs)


def _eval_inputs(cfg, d: dict, h: dict) -> dict:
    return {"train": h["train"], "eval": d["eval"]}


def _bench_inputs(cfg, d: dict, h: dict) -> dict:
    prepare = h["prepare"] if "prepare" in cfg.active_stages else None
    return {"prepare": prepare, "model": _hashed(d, "model"), "bench": d["bench"], "device": d["train"]["device"]}


def _report_inputs(cfg, d: dict, h: dict) -> dict:
    return {"eval": h["eval"], "bench": h["bench"], "report": d["report"], "name": d["name"],
            "description": d["description"], "stages": cfg.active_stages, "expect": d.get("expect")}  # fmt: skip


STAGES: tuple[Stage, ...] = (
    Stage(
        "prepare",
        "tokenizer + token streams in runs/<EXP>/prepared/",
        "pipeline.data.prepare:run_prepare",
        "prepared",
        _prepare_inputs,
    ),
    Stage(
        "train",
        "train the model (resumes from the newest checkpoint)",
        "pipeline.train.loop:run_train",
        "train",
        _train_inputs,
        needs=("prepare",),
        make_command="$(TRAIN_CMD)",
        command_run="pipeline.train.external:run_external",
    ),  # fmt: skip
    Stage(
        "eval",
        "perplexity + lm-evaluation-harness",
        "pipeline.evaluate.stage:run_eval",
        "eval",
        _eval_inputs,
        needs=("train",),
    ),  # fmt: skip
    Stage(
        "bench",
        "benchmark sweep: each variant x repeat in a fresh process",
        "pipeline.bench.sweep:run_bench",
        "bench",
        _bench_inputs,
        after=("prepare",),
        default=False,
    ),  # fmt: skip
    Stage(
        "report",
        "render reports/<EXP>/report.md (and report.<lang>.md)",
        "pipeline.report.render:run_report",
        "report",
        _report_inputs,
        after=("prepare", "train", "eval", "bench"),
        default=False,
        code=("pipeline/report", "templates", "pipeline/locale"),
    ),  # fmt: skip
)
STAGE = {s.name: s for s in STAGES}
WORK_STAGES = tuple(s.name for s in STAGES if s.name != "report")  # what `stages:` may list


def active_stages(config: dict) -> list[str]:
    """The stages a run has, from its (resolved) config as a dict: `stages:`, else the defaults (+ bench when
    a bench: section exists); an imported run has none (the import wrote the outputs)."""
    if config.get("imported"):
        return []
    if config.get("stages") is not None:
        return list(config["stages"])
    if _command(config):
        return ["train"] + (["eval"] if (config.get("train") or {}).get("checkpoint") else [])
    return [s.name for s in STAGES if s.default] + (["bench"] if config.get("bench") else [])


def _command(config: dict) -> bool:
    return bool((config.get("train") or {}).get("command"))


def stage_hashes(cfg) -> dict[str, str]:
    """Hash of each stage's inputs, in table order (a stage's inputs may include earlier stages' hashes)."""
    from pipeline.config.resolve import digest, to_dict

    d, hashes = to_dict(cfg), {}
    for stage in STAGES:
        hashes[stage.name] = digest(stage.inputs(cfg, d, hashes))
    return hashes


# --------------------------------------------------------------------------- Make
def _deps(stage: Stage, active: list[str], config: dict | None = None) -> list[str]:
    needs = stage.needs_for(config or {})
    return [f"$(RUN)/{STAGE[n].done}" for n in needs + tuple(a for a in stage.after if a in active)]


def make_fragment() -> str:
    """pipeline/stages.mk: one rule per stage. Per-run prerequisites (`DEPS_<stage>`) come from the run's
    stamps/targets.mk (`run_targets`, written by resolve); the defaults here apply before the first resolve
    (e.g. under `make -n`) and are the default stage list's."""
    defaults = [s.name for s in STAGES if s.default] + ["bench"]  # bench's default prerequisite: prepare
    lines = ["# Generated from pipeline/stages.py by `make stages.mk`; do not edit (tests/test_stages.py checks it).",
             "# DEPS_<stage>: the outputs it waits for, set per run in runs/<EXP>/stamps/targets.mk by resolve.",
             f"STAGES := {' '.join(s.name for s in STAGES)}"]  # fmt: skip
    lines += [f"HELP_{s.name} := {s.help}" for s in STAGES] + [""]
    report = STAGE["report"]
    lines += [f"REPORT_CODE := $(shell find {' '.join(report.code)} -type f -not -name '*.pyc' 2>/dev/null)",
              "# A repeat/sweep (MEMBERS set by its targets.mk) has its own rules in the Makefile.",
              "ifeq ($(strip $(MEMBERS)),)", ""]  # fmt: skip
    for stage in STAGES:
        if stage.name == "report":
            continue
        lines += [f"DEPS_{stage.name} ?= {' '.join(_deps(stage, defaults))}".rstrip(),
                  f"$(RUN)/{stage.done}: $(RUN)/stamps/{stage.name}.sha256 $(DEPS_{stage.name})",
                  f"\t{stage.make_command.format(name=stage.name)} $(RUN)",
                  f"_{stage.name}: $(RUN)/{stage.done}", ""]  # fmt: skip
    lines += [f"DEPS_report ?= {' '.join(_deps(report, [s.name for s in STAGES if s.default]))}",
              "REPORT_OUTPUTS ?= $(REPORT_DIR)/report.md",
              "$(REPORT_OUTPUTS) &: $(RUN)/stamps/report.sha256 $(DEPS_report) $(COMPARE_INPUTS) $(REPORT_CODE) "
              "$(wildcard $(REPORT_DIR)/notes.md $(RUN)/stamps/layout)",
              f"\t{report.make_command.format(name='report')} $(RUN) --out $(REPORT_DIR)",
              "_report: $(REPORT_OUTPUTS)", "endif", ""]  # fmt: skip
    return "\n".join(lines)


def report_files(cfg) -> list[str]:
    """The report files a run's config asks for: report.md (English), report.<lang>.md for the others."""
    languages = cfg.report.language
    languages = [languages] if isinstance(languages, str) else list(languages)
    return [f"report{'' if lang == 'en' else '.' + lang}.md" for lang in languages]


def _failed_command(cfg, run_root) -> bool:
    """A train.command whose last run failed: its train/DONE records the failure for the report, and the next
    `make` runs the command again (FORCE) instead of taking that DONE as done."""
    if not cfg.train.command or run_root is None:
        return False
    from pipeline import records

    return records.TRAIN_DONE.read(run_root).status == "failed"


def run_targets(cfg, run_root=None) -> str:
    """runs/<EXP>/stamps/targets.mk: this run's prerequisites for the rules in stages.mk."""
    active, config = cfg.active_stages, {"train": cfg.train.model_dump()}
    lines = ["# written by `python -m pipeline resolve` from pipeline/stages.py; do not edit"]
    rerun = _failed_command(cfg, run_root)
    for stage in STAGES[:-1]:
        deps = _deps(stage, active, config) + (["FORCE"] if stage.name == "train" and rerun else [])
        lines.append(f"DEPS_{stage.name} := {' '.join(deps)}".rstrip())
    report = [f"$(RUN)/{STAGE[n].done}" for n in active] + (["$(RUN)/import/import.json"] if cfg.imported else [])
    lines.append(f"DEPS_report := {' '.join(report)}".rstrip())
    lines.append(f"REPORT_OUTPUTS := {' '.join(f'$(REPORT_DIR)/{f}' for f in report_files(cfg))}")
    hpc, base = cfg.hpc, cfg.report.compare_to
    # A train.command is launched once; starting its processes (torchrun, srun) is the command's own business.
    nodes, nproc = (1, 1) if cfg.train.command else (hpc.nodes, max(1, hpc.gpus_per_node))
    lines += [f"TRAIN_NNODES := {nodes}", f"TRAIN_NPROC := {nproc}", f"RDZV_PORT := {hpc.rdzv_port}"]
    # The baseline's stamps and outputs: re-running (or re-configuring) the baseline re-renders this report. A
    # repeat/sweep baseline (members.json) holds its runs one (`seed-<n>`, `<point>`) or two (`<point>/seed-<n>`)
    # folders down: their member.json changes with each member's outcome.
    folders = ("", "*/", "*/*/")  # the run itself, a member, a member of a sweep point
    watched = " ".join(
        [f"runs/{base}/{d}stamps/*.sha256 runs/{base}/{d}*/DONE runs/{base}/{d}member.json" for d in folders]
        + [f"runs/{base}/import/import.json runs/{base}/members.json"]
    )
    lines.append(f"COMPARE_INPUTS := {f'$(wildcard {watched})' if base else ''}".rstrip())
    return "\n".join(lines) + "\n"


def main() -> None:
    print(make_fragment(), end="")


if __name__ == "__main__":
    main()
