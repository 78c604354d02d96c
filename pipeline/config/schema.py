"""The experiment schema: one typed section per concern, composed into `Experiment`.

Every field's unit or meaning is in its description; defaults live here and nowhere else.
Validation is structural (types, ranges, unknown keys); rules that span sections are in
`Experiment._cross_checks` so that a bad file fails at load, before any stage runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.report.i18n import LANGUAGES
from pipeline.stages import WORK_STAGES

PositiveInt = Annotated[int, Field(gt=0)]
StageName = Literal[WORK_STAGES]  # the stage table's names (pipeline/stages.py), the report aside
Language = Literal[LANGUAGES]  # the report languages with a message catalog (pipeline/report/i18n.py)
NonNegInt = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- model
class ModelConfig(Section):
    # Extra keys are the custom model's own settings; without `custom` they are unknown keys (`_extra_keys`).
    model_config = ConfigDict(extra="allow", frozen=True)

    custom: str | None = Field(
        None,
        description="'package.module:function' building your own torch.nn.Module from this section (a dict, "
        "your keys included) and the vocabulary size; forward(input_ids, labels) returns the loss "
        "(pipeline/model.py). The other keys then mean what your function makes of them",
    )
    arch: Literal["llama", "gpt2", "gpt_neox", "qwen2", "mistral"] = Field(
        "llama", description="transformers model_type, built with AutoModelForCausalLM.from_config"
    )
    dim: PositiveInt = Field(128, description="hidden size")
    layers: PositiveInt = Field(2, description="transformer blocks")
    heads: PositiveInt = Field(4, description="attention heads")
    kv_heads: PositiveInt | None = Field(None, description="key/value heads (GQA); default = heads")
    ffn_dim: PositiveInt | None = Field(None, description="MLP hidden size; default = 4*dim (gpt2) or 8/3*dim (llama)")
    vocab_size: PositiveInt | None = Field(None, description="default: the tokenizer's vocabulary size")
    max_seq_len: PositiveInt = Field(256, description="positions the model supports (tokens)")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    tie_embeddings: bool = True
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"

    @model_validator(mode="after")
    def _extra_keys(self) -> ModelConfig:
        import difflib

        for key in self.model_extra or {}:
            if self.custom is None:
                hint = difflib.get_close_matches(key, list(type(self).model_fields), n=1)
                tail = f"did you mean '{hint[0]}'?" if hint else "extra keys are allowed only with model.custom"
                raise ValueError(f"model.{key}: unknown key; {tail}")
        if self.custom is not None and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", self.custom):
            raise ValueError(f"model.custom: expected 'package.module:function', got {self.custom!r}")
        return self

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"model.heads: must divide model.dim={self.dim}, got {self.heads}")
        kv = self.kv_heads or self.heads
        if self.heads % kv:
            raise ValueError(f"model.kv_heads: must divide model.heads={self.heads}, got {kv}")
        return self


# --------------------------------------------------------------------------- data
class BuiltinSource(Section):
    type: Literal["builtin"]
    name: Literal["gensim-wiki", "kjv"] = Field(
        description="text shipped inside a pip package (offline): gensim's Wikipedia sample or the King James Bible"
    )


class HFSource(Section):
    type: Literal["hf"]
    name: str = Field(description="datasets.load_dataset path, e.g. 'wikitext'")
    config: str | None = Field(None, description="dataset config, e.g. 'wikitext-2-raw-v1'")
    text_field: str = "text"
    revision: str | None = None
    data_files: dict[str, list[str]] | None = Field(
        None, description="split -> local files, for file builders such as name: text / json / parquet"
    )


class FilesSource(Section):
    type: Literal["files"]
    format: Literal["text", "jsonl"] = Field("text", description="text: one document per blank-line-separated block")
    text_field: str = Field("text", description="key holding the text in each JSONL object")
    train: list[Path] = Field(min_length=1)
    validation: list[Path] = Field(default_factory=list)
    test: list[Path] = Field(default_factory=list)


class ImportedSource(Section):
    """Set by `make import` only: the data was read by another trainer; the stages here never load it."""

    type: Literal["imported"]
    name: str | None = Field(None, description="dataset as the source's own config names it, if it does")


class CommandSource(Section):
    """Set for a `train.command` run without a data section: the command reads its own data."""

    type: Literal["command"]
    name: str | None = Field(None, description="the dataset, in your words (shown in the report)")


Source = Annotated[BuiltinSource | HFSource | FilesSource | ImportedSource | CommandSource, Field(discriminator="type")]


class BPETokenizer(Section):
    type: Literal["bpe"]
    vocab_size: Annotated[int, Field(ge=260)] = Field(description="includes the 256 byte symbols and specials")
    min_frequency: PositiveInt = 2


class PretrainedTokenizer(Section):
    type: Literal["pretrained"]
    path: str = Field(description="local directory or hub name of a tokenizer")


class ByteTokenizer(Section):
    type: Literal["bytes"]


class ImportedTokenizer(Section):
    type: Literal["imported"]
    name: str | None = Field(None, description="tokenizer as the source's own config names it, if it does")


class CommandTokenizer(Section):
    type: Literal["command"]
    name: str | None = Field(None, description="a `train.command` run: its tokenizer, in your words")


Tokenizer = Annotated[
    BPETokenizer | PretrainedTokenizer | ByteTokenizer | ImportedTokenizer | CommandTokenizer,
    Field(discriminator="type"),
]


class DataConfig(Section):
    source: Source
    tokenizer: Tokenizer = Field(default_factory=lambda: ByteTokenizer(type="bytes"))
    seq_len: PositiveInt | None = Field(
        None, description="training sequence length (tokens); default model.max_seq_len"
    )
    val_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = Field(
        0.05, description="share of documents held out when the source has no validation split"
    )
    test_fraction: Annotated[float, Field(ge=0.0, lt=0.5)] = Field(
        0.05, description="share of documents held out when the source has no test split"
    )
    max_documents: PositiveInt | None = Field(None, description="use only the first N documents (debug runs)")


# --------------------------------------------------------------------------- train
def known_importer(value: str) -> str:
    """An importer name of `pipeline.importers.ADAPTERS` (train.logs.from, an imported run's format)."""
    from pipeline.importers import ADAPTERS  # here, not at the top: the importers import this module

    if value not in ADAPTERS:
        raise ValueError(f"expected one of {', '.join(map(repr, ADAPTERS))}, got {value!r}")
    return value


class ExternalLogs(Section):
    """Where a `train.command` writes its metrics, read by the importer named in `from` (pipeline/importers/)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)
    from_: str = Field(alias="from", description="an importer's FROM= name: jsonl, hf-trainer, lightning, …")
    path: str = Field(description="the file or folder that importer reads; placeholders as in train.command")

    _known_importer = field_validator("from_")(known_importer)


ValidationMetric = Literal["val_loss", "val_perplexity", "val_accuracy"]  # train/validation.jsonl keys
# Better is lower, except for accuracy (pipeline/train/lifecycle.py).


class EarlyStopping(Section):
    metric: ValidationMetric = Field("val_loss", description="validation key watched")
    patience: PositiveInt = Field(3, description="validation passes without improvement before training stops")
    min_delta: Annotated[float, Field(ge=0.0)] = Field(
        0.0, description="an improvement must beat the best value so far by more than this (the metric's unit)"
    )


class KeepBest(Section):
    metric: ValidationMetric = Field("val_loss", description="validation key the best checkpoint is chosen by")


class TrainConfig(Section):
    steps: PositiveInt | None = Field(None, description="optimizer steps; exactly one of steps/epochs")
    epochs: PositiveInt | None = None
    batch_size: PositiveInt = Field(8, description="sequences per micro-batch (per process)")
    grad_accum: PositiveInt = Field(1, description="micro-batches per optimizer step")
    lr: Annotated[float, Field(gt=0.0)] = Field(1e-3, description="peak learning rate")
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = Field(0.1, description="cosine floor as a share of lr")
    warmup_steps: NonNegInt = 0
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: Annotated[float, Field(ge=0.0)] = Field(1.0, description="max grad norm; 0 disables clipping")
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    log_every: PositiveInt = Field(10, description="steps between metrics.jsonl lines")
    eval_every: PositiveInt = Field(50, description="steps between validation passes")
    eval_batches: PositiveInt = Field(8, description="validation batches per pass")
    checkpoint_every: PositiveInt = Field(100, description="steps between checkpoints (the last step always saves)")
    keep_checkpoints: PositiveInt = Field(2, description="newest N checkpoints kept on disk")
    stop_on_nonfinite: bool = Field(True, description="stop when the loss becomes NaN/Inf")
    command: str | None = Field(
        None,
        description="your own trainer as the train stage: a shell command run from the project root, with "
        "{run}, {exp}, {seed} and any resolved config key ({train.lr}) filled in (pipeline/train/external.py)",
    )
    logs: ExternalLogs | None = Field(None, description="with train.command: where its metrics appear")
    checkpoint: str | None = Field(
        None, description="with train.command: a Hugging Face model folder it writes; the eval stage evaluates it"
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="stop when a validation metric stops improving (train/DONE: early_stopped + why)"
    )
    keep_best: KeepBest | None = Field(
        None, description="also keep checkpoints/best/: the step with the best validation metric"
    )
    mirror: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="also write the metrics as TensorBoard events / a W&B offline run under runs/<EXP>/mirror/",
    )

    @model_validator(mode="after")
    def _steps_xor_epochs(self) -> TrainConfig:
        if self.command is None and (self.logs or self.checkpoint):
            raise ValueError("train.command: train.logs and train.checkpoint describe a command; give it")
        if self.command is not None:
            if self.logs is None:
                raise ValueError("train.logs: required with train.command, e.g. {from: jsonl, path: ...}")
            if self.steps is not None and self.epochs is not None:
                raise ValueError("train.steps: give at most one of train.steps or train.epochs")
            return self  # the planned length is optional: the command's logs may state it
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("train.steps: give exactly one of train.steps or train.epochs")
        if self.warmup_steps and self.steps and self.warmup_steps >= self.steps:
            raise ValueError(f"train.warmup_steps: must be < train.steps={self.steps}, got {self.warmup_steps}")
        return self


# --------------------------------------------------------------------------- eval
class PerplexityConfig(Section):
    split: Literal["test", "validation"] = "test"
    batch_size: PositiveInt = 8
    seq_len: PositiveInt | None = Field(None, description="default data.seq_len")
    max_batches: PositiveInt | None = Field(None, description="default: the whole split")
    precision: Literal["fp32", "fp16", "bf16"] | None = Field(None, description="default train.precision")


class HarnessTask(Section):
    task: str = Field(description="lm-eval task or group name")
    num_fewshot: NonNegInt | None = Field(None, description="default: the task's own")
    limit: Annotated[float, Field(gt=0)] | None = Field(
        None, description="evaluate only the first N items (N >= 1) or this share of them (N < 1)"
    )


class HarnessConfig(Section):
    tasks: list[str | HarnessTask] = Field(
        default_factory=list, description="lm-eval tasks: names or {task, num_fewshot, limit}"
    )
    batch_size: PositiveInt | Literal["auto"] = 16
    max_batch_size: PositiveInt = 64
    include_path: list[Path] = Field(default_factory=list, description="extra directories of task YAMLs")
    seed: int = 1234
    precision: Literal["fp32", "fp16", "bf16"] | None = Field(None, description="default train.precision")
    max_gen_toks: PositiveInt | None = Field(None, description="cap on generated tokens (default: the task's)")

    def specs(self) -> list[HarnessTask]:
        return [HarnessTask(task=t) if isinstance(t, str) else t for t in self.tasks]


class EvalConfig(Section):
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)
    harness: HarnessConfig = Field(default_factory=HarnessConfig)
    checkpoint: PositiveInt | Literal["best", "last"] | None = Field(
        None, description="step to evaluate, 'best' (train.keep_best) or 'last'; default the latest"
    )


# --------------------------------------------------------------------------- bench
class BenchSettings(Section):
    """What a variant may change. Unset fields take the sweep's fixed conditions."""

    precision: Literal["fp32", "fp16", "bf16"] | None = Field(
        None, description="train: autocast dtype (weights fp32); forward/generate: weight dtype"
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    finetune: Literal["full", "lora", "qlora"] | None = Field(
        None, description="lora: peft LoRA on all linear layers; qlora: 4-bit NF4 base (bitsandbytes) + LoRA"
    )
    lora_r: PositiveInt | None = None
    grad_accum: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    compile: bool | None = None
    num_workers: NonNegInt | None = Field(None, description="DataLoader worker processes feeding the batches")
    use_cache: bool | None = Field(None, description="KV cache during generation")
    gradient_checkpointing: bool | None = None


class BenchVariant(BenchSettings):
    name: str = Field(description="label in tables and plots")


class BenchConfig(Section):
    workload: Literal["train", "forward", "generate"] = "train"
    pretrained: str | None = Field(None, description="local HF model dir; default: the experiment's model, random init")
    seq_len: PositiveInt = Field(128, description="tokens per sequence (train/forward) ")
    prompt_len: PositiveInt = Field(32, description="generate: prompt tokens")
    new_tokens: PositiveInt = Field(32, description="generate: tokens generated per sequence")
    steps: PositiveInt = Field(10, description="measured steps per repeat")
    warmup_steps: NonNegInt = Field(3, description="steps run before measuring (compile, allocator, caches)")
    repeats: PositiveInt = Field(3, description="fresh processes per variant")
    fixed: BenchSettings = Field(
        default_factory=lambda: BenchSettings(
            precision="fp32",
            attn_implementation="sdpa",
            finetune="full",
            lora_r=8,
            grad_accum=1,
            batch_size=8,
            compile=False,
            num_workers=0,
            use_cache=True,
            gradient_checkpointing=False,
        )
    )
    variants: list[BenchVariant] = Field(default_factory=list)
    matrix: dict[str, list] = Field(
        default_factory=dict, description="field -> values; every combination becomes a variant"
    )
    baseline: str | None = Field(None, description="variant the ratios are against; default the first")
    timeout_s: PositiveInt = Field(1800, description="per variant process")

    def expanded(self) -> list[BenchVariant]:
        """Explicit variants, then the matrix's cartesian product (named field=value,...)."""
        from itertools import product

        out = list(self.variants)
        keys = list(self.matrix)
        for values in [] if not keys else product(*(self.matrix[k] for k in keys)):
            out.append(BenchVariant(name=",".join(f"{k}={v}" for k, v in zip(keys, values)), **dict(zip(keys, values))))
        return out

    def settings(self, variant: BenchVariant) -> dict:
        """Fixed conditions overridden by the variant: what the variant requests."""
        base = self.fixed.model_dump()
        base.update({k: v for k, v in variant.model_dump(exclude={"name"}).items() if v is not None})
        return base


# --------------------------------------------------------------------------- hpc
class HPCConfig(Section):
    """Resources for `make submit` (Slurm or PJM). Scheduler-specific names are mapped by the job templates."""

    partition: str | None = Field(None, description="Slurm partition / PJM resource group (rscgrp)")
    account: str | None = Field(None, description="Slurm account / PJM group (-g)")
    nodes: PositiveInt = 1
    gpus_per_node: NonNegInt = Field(0, description="GPUs per node; nodes x gpus_per_node > 1 launches torchrun (DDP)")
    cpus_per_task: PositiveInt | None = None
    mem: str | None = Field(None, description="memory per node, e.g. 64G (Slurm --mem)")
    time: str = Field("01:00:00", description="wall-clock limit, HH:MM:SS")
    job_name: str | None = Field(None, description="default: labnote-<experiment>")
    modules: list[str] = Field(default_factory=list, description="`module load` lines run before the job")
    extra_directives: list[str] = Field(default_factory=list, description="verbatim #SBATCH / #PJM arguments")
    setup: list[str] = Field(default_factory=list, description="shell lines run before make, e.g. exports")
    rdzv_port: Annotated[int, Field(ge=1024, le=65535)] = 29500

    @field_validator("time", mode="before")
    @classmethod
    def _sexagesimal(cls, value):
        # YAML 1.1 reads an unquoted 2:00:00 as the integer 7200 (seconds): turn it back into H:MM:SS.
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value // 3600}:{value % 3600 // 60:02d}:{value % 60:02d}"
        return value

    @property
    def world_size(self) -> int:
        return self.nodes * max(1, self.gpus_per_node)


# --------------------------------------------------------------------------- report
class ReportConfig(Section):
    title: str | None = None
    language: Language | list[Language] = Field(
        "en",
        description="report language(s): en -> report.md, ja -> report.ja.md; a list ([en, ja]) renders each",
    )
    compare_to: str | None = Field(None, description="another experiment to compare with")
    max_table_rows: Annotated[int, Field(ge=5)] = Field(25, description="training table is thinned to this many rows")
    redact: list[str] = Field(
        default_factory=list,
        description="extra regular expressions whose matches are replaced by [redacted] in everything written "
        "to runs/ and reports/ (built-in: URL credentials, token=/key= values, known token shapes)",
    )

    @field_validator("compare_to")
    @classmethod
    def _compare_name(cls, value):
        from pipeline.names import valid

        if value is not None and not valid(value):
            raise ValueError(f"must be an experiment name ([A-Za-z0-9][A-Za-z0-9._-]*), got {value!r}")
        return value

    @field_validator("redact")
    @classmethod
    def _patterns_compile(cls, value):
        import re

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc}): {pattern!r}") from None
        return value

    @field_validator("language")
    @classmethod
    def _languages_once(cls, value):
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("report.language: name each language once, e.g. [en, ja]")
        return value

    @property
    def languages(self) -> list[str]:
        """The languages to render, in order (a single language is a list of one)."""
        return list(self.language) if isinstance(self.language, list) else [self.language]


# --------------------------------------------------------------------------- repeats and sweeps
class RepeatConfig(Section):
    """Run the experiment once per seed (pipeline/sweep.py); `make … SEEDS="0 1 2"` sets it from the command line."""

    seeds: list[int] = Field(min_length=1, description="train.seed of each member run: runs/<EXP>/seed-<n>/")

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"repeat.seeds: name each seed once, got {value}")
        return value


class SweepConfig(Section):
    """Hyperparameter points (pipeline/sweep.py): each point is a member run in runs/<EXP>/<point>/."""

    grid: dict[str, list] = Field(
        default_factory=dict, description="dotted key -> values; every combination is a point (last key fastest)"
    )
    zip: dict[str, list] = Field(
        default_factory=dict, description="dotted key -> values, all the same length, taken side by side"
    )

    @model_validator(mode="after")
    def _lists(self) -> SweepConfig:
        for part in ("grid", "zip"):
            for key, values in getattr(self, part).items():
                if not values:
                    raise ValueError(f"sweep.{part}.{key}: give at least one value")
                if len({repr(v) for v in values}) != len(values):
                    raise ValueError(f"sweep.{part}.{key}: name each value once, got {values}")
        lengths = {key: len(values) for key, values in self.zip.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            first = next(iter(self.zip))
            raise ValueError(f"sweep.zip.{first}: zip lists must have the same length, got {shown}")
        both = set(self.grid) & set(self.zip)
        if both:
            key = sorted(both)[0]
            raise ValueError(f"sweep.zip.{key}: given in sweep.grid too; put each key in one of them")
        if not self.grid and not self.zip:
            raise ValueError("sweep.grid: give at least one key to sweep (sweep.grid or sweep.zip)")
        return self

    @property
    def keys(self) -> list[str]:
        return [*self.grid, *self.zip]


class ImportInfo(Section):
    """A run trained/evaluated by another tool and converted by `make import` (pipeline/importers/)."""

    format: str = Field(description="the tool that wrote it: a FROM= name of pipeline.importers.ADAPTERS")
    source: str = Field(description="file or directory the artefacts were read from")
    provides: list[Literal["train", "eval"]] = Field(description="which stages' outputs the import wrote")

    _known_importer = field_validator("format")(known_importer)


class Experiment(Section):
    name: str
    description: str = ""
    extends: str | None = Field(None, description="parent experiment (file stem in experiments/)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    bench: BenchConfig | None = None
    hpc: HPCConfig = Field(default_factory=HPCConfig)
    stages: list[StageName] | None = Field(
        None, description="stages the report needs; default prepare, train, eval (+ bench when bench: is set)"
    )
    imported: ImportInfo | None = Field(None, description="written by `make import`; never set by hand")
    expect: list[str] = Field(
        default_factory=list,
        description="goals checked against the run's numbers, e.g. 'eval.perplexity < 40' (pipeline/report/expect.py)",
    )
    repeat: RepeatConfig | None = Field(None, description="one member run per seed (runs/<EXP>/seed-<n>/)")
    sweep: SweepConfig | None = Field(None, description="one member run per point (runs/<EXP>/<point>/)")

    @property
    def active_stages(self) -> list[str]:
        from pipeline.stages import active_stages

        return active_stages(
            {"imported": self.imported, "stages": self.stages, "bench": self.bench, "train": self.train.model_dump()}
        )

    @model_validator(mode="before")
    @classmethod
    def _command_needs_no_data(cls, tree):
        # A train.command reads its own data: without a data section, the config says so instead of guessing one.
        train = tree.get("train") if isinstance(tree, dict) else None
        if isinstance(train, dict) and train.get("command") is not None and tree.get("data") is None:
            tree = {**tree, "data": {"source": {"type": "command"}, "tokenizer": {"type": "command"}}}
        return tree

    @model_validator(mode="after")
    def _cross_checks(self) -> Experiment:
        positions = self.model.max_seq_len
        if self.data.seq_len and self.data.seq_len > positions:
            raise ValueError(f"data.seq_len: must be <= model.max_seq_len={positions}, got {self.data.seq_len}")
        ppl_len = self.eval.perplexity.seq_len
        if ppl_len and ppl_len > positions:
            raise ValueError(f"eval.perplexity.seq_len: must be <= model.max_seq_len={positions}, got {ppl_len}")
        if self.bench:
            names = [v.name for v in self.bench.expanded()]
            if len(set(names)) != len(names):
                raise ValueError(f"bench.variants: names must be unique, got {names}")
            if not names:
                raise ValueError("bench.variants: give at least one variant (or a bench.matrix)")
            if self.bench.baseline and self.bench.baseline not in names:
                raise ValueError(f"bench.baseline: must be one of {names}, got {self.bench.baseline!r}")
            if (
                "bench" in self.active_stages
                and "prepare" not in self.active_stages
                and not self.model.vocab_size
                and not self.bench.pretrained
            ):
                raise ValueError("model.vocab_size: required when the bench runs without the prepare stage")
            if self.bench.workload != "generate" and self.bench.seq_len > positions:
                raise ValueError(f"bench.seq_len: must be <= model.max_seq_len={positions}, got {self.bench.seq_len}")
        if self.train.command is not None:
            from pipeline.train.external import check_placeholders

            check_placeholders(self)
            if "prepare" in self.active_stages:
                raise ValueError("stages: a train.command trains on its own data; leave 'prepare' out")
            if "eval" in self.active_stages and not self.train.checkpoint:
                raise ValueError("stages: 'eval' needs train.checkpoint (the model folder the command writes)")
        elif self.data.source.type == "command" or self.data.tokenizer.type == "command":
            raise ValueError("data.source.type: 'command' is for experiments with train.command")
        if (self.imported is None) != (self.data.source.type != "imported"):
            raise ValueError("data.source.type: 'imported' is written by `make import` only, together with imported:")
        from pipeline.report.expect import validate

        validate(self.expect, bool(self.report.compare_to))
        if self.eval.checkpoint == "best" and not self.train.keep_best:
            raise ValueError("eval.checkpoint: 'best' needs train.keep_best (e.g. {metric: val_loss})")
        if len(set(self.train.mirror)) != len(self.train.mirror):
            raise ValueError(f"train.mirror: name each tracker once, got {self.train.mirror}")
        if "bench" in (self.stages or []) and not self.bench:
            raise ValueError("stages: 'bench' needs a bench: section")
        if self.sweep:
            self._check_swept_keys()
        tok = self.data.tokenizer
        if self.model.vocab_size and isinstance(tok, BPETokenizer) and self.model.vocab_size < tok.vocab_size:
            raise ValueError(
                f"model.vocab_size: must be >= data.tokenizer.vocab_size={tok.vocab_size}, got {self.model.vocab_size}"
            )
        return self

    def _check_swept_keys(self) -> None:
        from pipeline.sweep import NOT_SWEPT, lookup

        for part in ("grid", "zip"):
            for key in getattr(self.sweep, part):
                where = f"sweep.{part}.{key}"
                if key in NOT_SWEPT or key.split(".")[0] in NOT_SWEPT:
                    hint = " (use repeat.seeds)" if key == "train.seed" else ""
                    raise ValueError(f"{where}: cannot be swept{hint}")
                try:
                    value = lookup(self, key)
                except AttributeError as exc:
                    raise ValueError(f"{where}: unknown key ({exc})") from None
                if isinstance(value, Section):
                    first = next(iter(type(value).model_fields))
                    raise ValueError(f"{where}: is a section; sweep its keys, e.g. {key}.{first}")

    @property
    def seq_len(self) -> int:
        return self.data.seq_len or self.model.max_seq_len
