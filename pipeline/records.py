"""The run-directory contract as code: every file of `runs/<EXP>/`, its path, who writes it, and its record.

`FILES` is the one list: the README's run-directory table is checked against it (tests/test_records.py), writers
go through `RunFile.write` / `RunFile.append` (validated, atomic), and readers through `RunFile.read`, which
returns a typed record. A record read from a missing or damaged file is an empty one: its fields are `None`
and it is falsy, so `if run.done:` asks "was it there?" and `run.done.status` never needs a guard.

Records keep keys they do not declare (`extra="allow"`): a newer writer's fields survive an older reader, and
imported runs carry what their tool recorded. JSONL rows go through `pipeline.jsonl` (one torn-line rule).

>>> done = TrainDone.model_validate({"status": "completed", "steps_done": 12, "parameters": {"total": 9}})
>>> bool(done), done.parameters.total, bool(TrainDone.missing()), TrainDone.missing().status is None
(True, 9, False, True)
>>> [f.path for f in FILES if f.writer == "eval"][:1], "eval/lm_eval.json" in [f.path for f in FILES]
(['eval/perplexity.json'], True)
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Generic, Literal, NotRequired, Required, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from pipeline import jsonl
from pipeline.atomic import write_json, write_text

log = logging.getLogger(__name__)


class Record(BaseModel):
    """A JSON object of the run directory. Falsy when it stands for a file that is missing or unreadable."""

    model_config = ConfigDict(extra="allow", protect_namespaces=())
    _present: bool = PrivateAttr(default=True)

    def __bool__(self) -> bool:
        return self._present

    @classmethod
    def missing(cls):
        record = cls.model_construct()
        record._present = False
        return record

    def get(self, key: str, default=None):
        """Dict-style access for keys only some writers record (extras included)."""
        value = getattr(self, key, None)
        return default if value is None else value


# --------------------------------------------------------------------------- records
class Git(Record):
    commit: str | None = None
    dirty: bool | None = None
    diff_sha256: str | None = None


class Gpu(Record):
    name: str | None = None
    memory_gib: float | None = None
    capability: str | None = None
    arch: str | None = None  # sm_XY from the capability
    uuid: str | None = None  # torch's; NVML is matched by it, never by index


class Device(Record):
    cpu: str | None = None
    cpu_count: int | None = None
    torch_threads: int | None = None
    gpus: list[Gpu] = Field(default_factory=list)
    cuda: str | None = None  # torch.version.cuda: the CUDA the torch build was made for (None: CPU-only build)
    driver: str | None = None
    driver_cuda: str | None = None  # the highest CUDA the driver supports (NVML, else nvidia-smi's header)
    nvidia_visible: bool | None = None  # /dev/nvidia*, nvidia-smi, or CUDA_VISIBLE_DEVICES naming GPUs
    nvidia: dict | None = None  # what made them visible
    cuda_usable: bool | None = None
    cuda_unusable_reason: str | None = None  # torch's own reason
    cudnn: int | None = None  # torch.backends.cudnn.version()
    nccl: str | None = None  # torch.cuda.nccl.version()
    arch_list: list[str] = Field(default_factory=list)  # the build's GPU targets
    compat_errors: list[str] = Field(default_factory=list)  # build vs driver / GPU architecture
    compat_notes: list[str] = Field(default_factory=list)


class TrainDevice(Record):
    """What the train stage asked for and got, and what the machine showed (the device_fallback check)."""

    requested: str | None = None  # train.device
    used: str | None = None
    world_size: int | None = None
    nvidia_visible: bool | None = None
    nvidia: dict | None = None
    cuda_build: str | None = None
    cuda_usable: bool | None = None
    cuda_unusable_reason: str | None = None
    hpc_nodes: int | None = None
    hpc_gpus_per_node: int | None = None


class NcclTransport(Record):
    """The transport NCCL chose, parsed from rank 0's NCCL_DEBUG=INFO log (pipeline/train/nccl.py)."""

    network: str | None = None  # IB, Socket, or a plugin's name
    channels: dict[str, int] = Field(default_factory=dict)  # transport -> channels (NET/IB, P2P/IPC, SHM, ...)
    version: str | None = None
    net_lines: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    log: str | None = None


class Scheduler(Record):
    scheduler: str | None = None
    job_id: str | None = None
    nodes: str | None = None


class Container(Record):
    runtime: str | None = None
    image: str | None = None
    sha256: str | None = None


class Launch(Record):
    started_utc: str | None = None
    ended_utc: str | None = None  # None: still running, or killed
    duration_s: float | None = None
    host: str | None = None
    job_id: str | None = None
    stage_hash: str | None = None  # the stage's input hash (stamps/<stage>.sha256) at launch
    resumed_from: int | None = None  # train: the checkpoint step this launch resumed from
    steps_lost: int | None = None  # train: steps the previous launch trained past its last checkpoint
    killed: bool | None = None  # it never recorded its end; ended_utc is its last log line
    command: str | None = None  # train.command: the command as run
    exit_code: int | None = None  # train.command: its exit code (128 + n: killed by signal n)


class StageRun(Record):
    launches: list[Launch] = Field(default_factory=list)  # every launch, oldest first
    started_utc: str | None = None
    ended_utc: str | None = None
    duration_s: float | None = None
    argv: list[str] = Field(default_factory=list)
    host: str | None = None
    job_id: str | None = None
    git_commit: str | None = None


class DevicePeak(Record):
    flops_per_s: float | None = None
    dtype: str | None = None
    device: str | None = None
    name: str | None = None
    datasheet_flops_per_s: float | None = None
    datasheet_dtype: str | None = None
    window_spread: float | None = None  # slowest over fastest window's rate, minus 1
    host_load_others: float | None = None  # share of the host's cores other processes used during the probe


class TrainCommand(Record):
    """A `train.command` run (pipeline/train/external.py): what ran, how it ended, where its script came from."""

    command: str | None = None  # placeholders filled in, as bash ran it
    values: dict = Field(default_factory=dict)  # the placeholders it used -> their values
    logs: str | None = None  # train.logs.path, filled in
    logs_from: str | None = None  # the importer that reads them
    checkpoint: str | None = None  # train.checkpoint, filled in
    exit_code: int | None = None
    started_utc: str | None = None
    duration_s: float | None = None
    stdout: str | None = None
    stderr: str | None = None
    script_git: dict | None = None  # the script's path; its repository's commit/dirty/diff when not this project's


class Provenance(Record):
    experiment: str | None = None
    config_hash: str | None = None
    config_file: str | None = None
    host: str | None = None
    user: str | None = None
    platform: str | None = None
    git: Git = Field(default_factory=Git)
    versions: dict[str, str | None] = Field(default_factory=dict)
    device: Device = Field(default_factory=Device)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    container: Container = Field(default_factory=Container)
    env: dict[str, str] = Field(default_factory=dict)
    stages: dict[str, StageRun] = Field(default_factory=dict)
    device_peak: DevicePeak | None = None
    train_device: TrainDevice | None = None
    nccl: NcclTransport | None = None
    train_command: TrainCommand | None = None
    imported: dict | None = None  # an import: tool, source, time, files read
    recovered: dict = Field(default_factory=dict)  # environment facts an imported source states


class Resolve(Record):
    experiment: str | None = None
    extends: str | None = None
    overrides: list[str] = Field(default_factory=list)
    config_hash: str | None = None


class Member(Record):
    name: str | None = None
    run_dir: str | None = None
    point_name: str | None = None
    seed: int | None = None
    point: dict = Field(default_factory=dict)
    overrides: list[str] = Field(default_factory=list)


class Members(Record):
    experiment: str | None = None
    description: str | None = None
    swept_keys: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    report: dict = Field(default_factory=dict)
    members: list[Member] = Field(default_factory=list)


class MemberStatus(Record):
    status: Literal["completed", "failed"] | None = None
    exit_code: int | None = None
    goal: str | None = None
    error: str | None = None
    log: str | None = None


class SplitStats(Record):
    documents: int | None = None
    characters: int | None = None
    tokens: int | None = None
    bytes: int | None = None  # UTF-8 bytes of text; this and below: written since prepare streams its splits
    seconds: float | None = None  # encoding + writing this split
    text_mb_per_s: float | None = None
    tokens_per_s: float | None = None


class PrepareThroughput(Record):
    encoder: str | None = None  # "byte table" (numpy lookup on UTF-8 bytes) or "tokenizers batch"
    load_seconds: float | None = None  # reading the documents
    tokenizer_seconds: float | None = None  # training or loading the tokenizer
    encode_seconds: float | None = None  # encoding + writing every split
    text_mb_per_s: float | None = None  # of encode_seconds
    tokens_per_s: float | None = None


class PreparedStats(Record):
    source: str | None = None
    tokenizer: str | None = None
    vocab_size: int | None = None
    eos_token_id: int | None = None
    token_dtype: str | None = None
    splits: dict[str, SplitStats] = Field(default_factory=dict)
    throughput: PrepareThroughput | None = None  # absent in folders prepared before it was recorded


class Plan(Record):
    steps_planned: int | None = None
    steps_per_epoch: int | None = None
    tokens_per_step: int | None = None
    train_hash: str | None = None
    steps_planned_from: str | None = None  # imports: "source" or "STEPS"
    continuations: list[dict] = Field(default_factory=list)  # earlier segments of a run made longer


class ParameterCounts(Record):
    total: int | None = None
    trainable: int | None = None
    embedding: int | None = None
    non_embedding: int | None = None
    matmul: int | None = None  # weights that multiply (linear layers + the output layer): flops.py


class TrainDone(Record):
    status: str | None = None  # completed / stopped_nonfinite (imports: completed / partial / unknown /
    # failed_before_first_step / early_stopped / failed)
    status_why: str | None = None  # imports: the source's own words for a status it states
    steps_done: int | None = None
    steps_planned: int | None = None
    steps_per_epoch: int | None = None
    tokens_per_step: int | None = None
    train_hash: str | None = None
    resumed_from: int | None = None
    parameters: ParameterCounts = Field(default_factory=ParameterCounts)
    device: str | None = None
    world_size: int | None = None
    flops_per_token: float | None = None
    device_peak: DevicePeak | None = None
    energy_j: float | None = None  # GPU board energy over training (NVML), None without NVML
    nvml_process_mem_gib: float | None = None  # NVML's figure for this process at the end
    nccl_network: str | None = None  # multi-process CUDA runs: the network NCCL chose (provenance `nccl`)
    imported: bool | None = None
    segments: int | None = None
    continuations: list[dict] = Field(default_factory=list)  # segments before train.steps/epochs was raised
    summary: dict = Field(default_factory=dict)  # imports: the tool's end-of-run summary, verbatim
    external: bool | None = None  # trained by train.command
    command: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    stderr_tail: list[str] = Field(default_factory=list)  # a failed command: its last stderr lines


class Perplexity(Record):
    checkpoint: str | None = None
    step: int | None = None
    split: str | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    batches: int | None = None
    valid_batches: int | None = None
    tokens: int | None = None
    dtype: str | None = None
    device: str | None = None
    loss: float | str | None = None  # "nan"/"inf" when non-finite
    perplexity: float | str | None = None
    accuracy: float | str | None = None
    bytes: int | None = None  # UTF-8 bytes of the predicted tokens (EOS = 1)
    characters: int | None = None
    bits_per_byte: float | None = None
    bits_per_char: float | None = None
    nan_count: int | None = None
    inf_count: int | None = None
    eval_time_s: float | None = None
    tokens_per_s: float | None = None


class RequestTiming(Record):
    seconds: float | None = None
    requests: int | None = None


class HarnessTiming(Record):
    checkpoint: str | None = None
    step: int | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int | str | None = None
    total_s: float | None = None
    requests: dict[str, RequestTiming] = Field(default_factory=dict)
    items: dict[str, int | None] = Field(default_factory=dict)
    # imports: where the results came from
    source: str | None = None
    model: str | None = None
    model_args: str | dict | None = None
    limit: float | int | None = None
    time_utc: str | float | None = None
    evaluations_recorded: int | None = None
    # imports of `--log_samples`: task -> "metric,filter" -> {"items": n, "above_zero": k (None: not a number per
    # item, e.g. a perplexity's pair)}, counted in samples_<task>_<time>.jsonl
    samples: dict[str, dict[str, dict[str, int | None]]] = Field(default_factory=dict)


class EvalDone(Record):
    perplexity: bool | None = None
    harness: bool | None = None
    harness_skipped: str | None = None  # why configured harness tasks did not run (a custom non-HF model)
    status: str | None = None
    imported: bool | None = None


class BenchSummary(Record):
    workload: str | None = None
    fixed: dict = Field(default_factory=dict)
    seq_len: int | None = None
    prompt_len: int | None = None
    new_tokens: int | None = None
    steps: int | None = None
    warmup_steps: int | None = None
    repeats: int | None = None
    baseline: str | None = None
    variants: dict[str, dict] = Field(default_factory=dict)  # per variant: pipeline/bench/sweep.py summarise


class BenchDone(Record):
    variants: int | None = None
    rows: int | None = None


class ImportedFile(Record):
    path: str
    bytes: int
    sha256: str


class ImportRecord(Record):
    format: str | None = None
    source: str | None = None
    source_absolute: str | None = None
    imported_utc: str | None = None
    files: list[ImportedFile] = Field(default_factory=list)
    provides: list[str] = Field(default_factory=list)
    steps_planned: int | None = None
    steps_planned_from: str | None = None
    warnings: list[str] = Field(default_factory=list)
    not_carried: dict[str, int] = Field(default_factory=dict)  # series the import could not carry -> rows
    runs: list[dict] = Field(default_factory=list)  # several runs found in the source; which one was read
    events: list[dict] = Field(default_factory=list)  # the log's evaluations, reloads, checkpoints (step, kind)
    extra_series: dict[str, int] = Field(default_factory=dict)  # train/extra.jsonl series -> rows
    summary: dict = Field(default_factory=dict)
    recovered: dict = Field(default_factory=dict)


class Summary(Record):
    """A run's row of `make index`, computed from its files and cached beside them (pipeline/report/summary.py)."""

    sources: dict = Field(default_factory=dict)  # what it was computed from: code, the run's and baseline's files
    name: str | None = None
    status: str | None = None
    has_train: bool | None = None
    n_errors: int | None = None
    n_warnings: int | None = None
    steps_done: int | None = None
    steps_planned: int | None = None
    ended_utc: str | None = None
    commit: str | None = None
    device: str | None = None
    params: int | None = None
    shape: str | None = None
    batch: int | None = None
    lr: float | None = None
    best_val_ppl: float | None = None
    best_val_acc: float | None = None
    test_ppl: float | None = None
    train_s: float | None = None


# JSONL rows: the keys and their units are the README's "train/metrics.jsonl keys".
class MetricRow(Record):
    step: int
    epoch: float | None = None
    loss: float | str | None = None
    grad_norm: float | str | None = None
    lr: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    step_time_s: float | None = None
    data_time_s: float | None = None
    mem_peak_gib: float | None = None
    flops_per_token: float | None = None
    flops_per_s: float | None = None
    mfu: float | None = None
    mfu_datasheet: float | None = None
    host_load: float | None = None  # share of the host's cores other processes used over the interval
    segment: int | None = None
    time_utc: str | None = None
    # imported runs only (keys the source did not record are absent)
    mem_peak_pct: float | None = None
    mem_reserved_gib: float | None = None
    power_w: float | None = None


class ValidationRow(Record):
    step: int
    dataset: str | None = None  # imports: which eval set (HF `eval_<name>_loss`, Lightning dataloader_idx_<n>)
    epoch: float | None = None
    val_loss: float | str | None = None
    val_perplexity: float | str | None = None
    val_accuracy: float | str | None = None
    val_tokens: int | None = None
    time_utc: str | None = None


class ExtraRow(Record):
    """A record's logged series that have no key of ours, under the source's own names (extra keys)."""

    step: int | None = None  # None: the source logged it without a step (HF `predict_*`)
    source: str  # which kind of record: train, eval, predict, log, epoch, …
    dataset: str | None = None


class TaskRow(Record):
    task: str
    metric: str
    filter: str | None = None
    value: float | None = None
    stderr: float | None = None
    n: int | None = None
    n_original: int | None = None
    num_fewshot: int | None = None
    higher_is_better: bool | None = None
    chance: float | None = None
    group: str | None = None  # lm-eval: the group this task (or group) belongs to
    is_group: bool | None = None  # lm-eval: a group's aggregate row, not a task
    output_type: str | None = None  # lm-eval: the task config's output_type (generate_until, multiple_choice, …)


def columns(row: type[Record]) -> list[str]:
    """The declared keys of a JSONL row, in order (the loader's table columns)."""
    return list(row.model_fields)


# --------------------------------------------------------------------------- the files
R = TypeVar("R", bound=Record)
Kind = Literal["json", "jsonl", "yaml", "text", "dir", "marker"]


@functools.cache
def _rows_adapter(record: type[Record]) -> TypeAdapter:
    """Rows checked against the record's fields as a TypedDict made from them: the same types and constraints
    without building a model per row (15x faster on 100K rows); a record with validators is checked as itself."""
    hooks = record.__pydantic_decorators__
    if hooks.validators or hooks.field_validators or hooks.root_validators or hooks.model_validators:
        return TypeAdapter(list[record])
    fields = {
        name: (Required if info.is_required() else NotRequired)[
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        ]
        for name, info in record.model_fields.items()
    }
    return TypeAdapter(list[TypedDict(f"{record.__name__}Dict", fields)])


class RecordError(ValueError):
    """A writer produced something its record does not accept: a bug, not a user error."""


@dataclass(frozen=True)
class RunFile(Generic[R]):
    path: str  # relative to runs/<EXP>/; <name> parts are placeholders
    writer: str  # the stage (or command) that writes it
    kind: Kind
    description: str
    record: type[R] | None = None

    def at(self, run_root: Path) -> Path:
        return Path(run_root) / self.path

    # ------------------------------------------------------------------ JSON objects
    def read(self, run_root: Path, problems: list[str] | None = None) -> R:
        """The typed record, or an empty (falsy) one when the file is missing; a file that is not valid JSON
        or does not match the record is a problem (reported by the `damaged_files` check), not a crash."""
        path = self.at(run_root)
        if not path.is_file():
            return self.record.missing()
        try:
            return self.record.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = f"not valid JSON ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        except ValidationError as exc:
            err = exc.errors()[0]
            why = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].lower()}"
        if problems is not None:
            problems.append(f"{self.path}: {why}; ignored")
        return self.record.missing()

    def write(self, run_root: Path, data: dict | Record) -> Path:
        """Validate against the record, then write atomically (temp file + rename)."""
        return self.write_file(self.at(run_root), data)

    def write_file(self, path: Path, data: dict | Record) -> Path:
        """`write` to an explicit path: for a stage folder built aside and renamed into place whole."""
        obj = data.model_dump(mode="json", exclude_unset=True) if isinstance(data, Record) else data
        self._check_row(obj)
        write_json(path, obj)
        return path

    # ------------------------------------------------------------------ JSON lines
    def rows(self, run_root: Path, problems: list[str], key: str | None = "step") -> list[dict]:
        """Rows in file order; damaged lines are skipped and described in `problems` (pipeline/jsonl.py)."""
        path = self.at(run_root)
        if not path.is_file():
            return []
        return [obj for _, obj in jsonl.read_lenient(path, problems, self.path, key)]

    def frame(self, run_root: Path, problems: list[str], key: str | None = "step"):
        """`rows` as a pandas DataFrame (read in blocks by pyarrow: the reader for long logs), same problems."""
        import pandas as pd

        path = self.at(run_root)
        if not path.is_file():
            return pd.DataFrame()
        return jsonl.read_frame(path, problems, self.path, key, cache=self.cache_at(run_root))

    def cache_at(self, run_root: Path) -> Path:
        """Where the report keeps this log's parsed columns (FRAME_CACHE)."""
        return Path(run_root) / FRAME_CACHE.path / f"{self.path}.arrow"

    def append(self, run_root: Path, row: dict) -> None:
        self._check_row(row)
        jsonl.append(self.at(run_root), row)

    def write_rows(self, run_root: Path, rows: list[dict]) -> Path:
        self._check_rows(rows)
        path = self.at(run_root)
        write_text(path, jsonl.text(rows))
        return path

    def write_rows_to(self, path: Path, rows: list[dict]) -> Path:
        """`write_rows` to one instance of a placeholder path (`eval/samples/<task>.jsonl`)."""
        self._check_rows(rows)
        write_text(path, jsonl.text(rows))
        return path

    def _check_rows(self, rows: list[dict]) -> None:
        """All rows in one pydantic call (a 100K-row import: one loop in pydantic-core, not 100K calls)."""
        if self.record is None or not rows:
            return
        try:
            _rows_adapter(self.record).validate_python(rows)
        except ValidationError as exc:
            err = exc.errors()[0]
            row, *loc = err["loc"]
            raise RecordError(f"{self.path}: row {row + 1}: {tuple(loc)}: {err['msg']}") from None

    def _check_row(self, row: dict) -> None:
        if self.record is None:
            return
        try:
            self.record.model_validate(row)
        except ValidationError as exc:
            raise RecordError(f"{self.path}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def _f(path, writer, kind, description, record=None) -> RunFile:
    return RunFile(path, writer, kind, description, record)


CONFIG = _f(
    "config.yaml",
    "resolve",
    "yaml",
    "the resolved experiment (defaults → `extends:` parents → file → `SET=`); stages read only this",
)
RESOLVE = _f("resolve.json", "resolve", "json", "experiment name, `extends`, the `SET` overrides, config hash", Resolve)
STAMPS = _f(
    "stamps/<stage>.sha256",
    "resolve",
    "text",
    "hash of each stage's inputs (what each hashes: `pipeline/stages.py`); rewritten only when it changes (Make targets depend on them)",
)
TARGETS = _f(
    "stamps/targets.mk",
    "resolve",
    "text",
    "this run's prerequisites for the stage rules in `pipeline/stages.mk` (from `stages:`, `report.language`, `report.compare_to`, `hpc:`)",
)
MEMBERS = _f(
    "members.json",
    "resolve",
    "json",
    "experiments with `repeat:`/`sweep:` only (instead of `config.yaml`): experiment, `swept_keys`, `seeds`, its `report:` section and each member — `name` (= `run_dir`, its folder here: `seed-<n>`, `<point>` or `<point>/seed-<n>`), `point_name`, `seed`, `point` (dotted key → value), `overrides` (its `SET` items); each member folder is a complete run ([Repeats and sweeps](#repeats-and-sweeps))",
    Members,
)
MEMBER_STATUS = _f(
    "member.json",
    "make report (member)",
    "json",
    "a member run of a repeat/sweep: how its `make` ended — `status` (`completed` / `failed`), `exit_code`, `goal`, the last `error:` line, `log` (`member.log`: that make's output); no times, so it changes only when the outcome does",
    MemberStatus,
)
MEMBER_LOG = _f("member.log", "make report (member)", "text", "a member run's `make` output (stdout and stderr)")
PROVENANCE = _f(
    "provenance.json",
    "every stage",
    "json",
    "git commit, dirty flag, sha256 of the uncommitted diff, config hash, host, user, Python/torch/transformers/datasets versions, device (CPU model; GPU name, memory, CUDA, driver), scheduler job id (`SLURM_JOB_ID`, `PJM_JOBID`), container, allow-listed env vars with secret-looking names removed (and secret-looking values — URL credentials, token shapes — replaced by `[redacted]`, as in every file written here); `stages.<name>`: start/end (UTC), duration, argv, host, and `launches` (every launch: start, end, host, job, input hash, resumed-from step, steps lost; a killed launch closed at its last log line); `device_peak` (train): the device's measured matmul rate in the training dtype — 8192² GEMMs for 3 s on a GPU, 1024² for 1 s on a CPU (`LABNOTE_PEAK_SECONDS` overrides), best of 5 windows, their spread and the share of the host other processes used meanwhile — with the datasheet peak where the GPU is known; `train_device` (train): the device asked for and used, whether NVIDIA devices were visible and CUDA usable (torch's reason when not); `device` also holds torch's CUDA build vs the driver's highest CUDA, cuDNN, NCCL, each GPU's `sm_XY` and UUID vs the build's arch list; `nccl` (multi-process CUDA): the network and per-channel transports NCCL chose; `train_command` (`train.command` runs): the command as run, its placeholders' values, exit code, start, duration, and its script's repository state (commit, dirty, diff hash) when the script lives in another repository; each train launch also records its command and exit code",
    Provenance,
)
TOKENIZER = _f(
    "prepared/tokenizer/",
    "prepare",
    "dir",
    "the tokenizer as a `transformers` fast tokenizer (`AutoTokenizer.from_pretrained`)",
)
TOKENS = _f(
    "prepared/<split>.npy",
    "prepare",
    "dir",
    "token ids of `train`, `validation`, `test`, documents joined with EOS: uint16 when the vocabulary has < 65,536 tokens, else uint32; written batch by batch, read memory-mapped (`np.load(mmap_mode='r')`)",
)
PREPARED_STATS = _f(
    "prepared/stats.json",
    "prepare",
    "json",
    "source, tokenizer, vocab size, token dtype; per split documents, characters, UTF-8 bytes, tokens, seconds, MB/s of text, tokens/s; `throughput`: the encoder (`byte table` or `tokenizers batch`), seconds reading documents, building the tokenizer and encoding, MB/s of text and tokens/s",
    PreparedStats,
)
PREPARED_DONE = _f("prepared/DONE", "prepare", "marker", "marker for Make")
PLAN = _f(
    "train/plan.json",
    "train",
    "json",
    "written at the start: steps planned, steps per epoch, tokens per step, train-input hash, `continuations`",
    Plan,
)
METRICS = _f("train/metrics.jsonl", "train", "jsonl", "one JSON object per log step, keys below", MetricRow)
VALIDATION = _f(
    "train/validation.jsonl",
    "train",
    "jsonl",
    "one object per validation pass (step 0 = untrained baseline)",
    ValidationRow,
)
EXTRA = _f(
    "train/extra.jsonl",
    "import, train",
    "jsonl",
    "imported runs and `train.command` runs: every numeric series the logs hold that has no key above, under its own name (step, kind of record, eval set)",
    ExtraRow,
)
TRAIN_DONE = _f(
    "train/DONE",
    "train",
    "json",
    "written at the end: status (`completed` / `stopped_nonfinite` / `early_stopped` with `status_why`; `train.command`: `completed` / `failed` with its exit code, duration and last stderr lines), steps done/planned, parameter counts, device, world size, `resumed_from`, `continuations` (segments before `train.steps`/`epochs` was raised), GPU energy (NVML)",
    TrainDone,
)
TRAIN_STDOUT = _f(
    "train/stdout.log",
    "train",
    "text",
    "`train.command` runs: the command's standard output, appended by every launch",
)
TRAIN_STDERR = _f(
    "train/stderr.log",
    "train",
    "text",
    "`train.command` runs: the command's standard error, appended by every launch (a failed report shows its last lines)",
)
CHECKPOINTS = _f(
    "checkpoints/<step>/",
    "train",
    "dir",
    "step with 10 digits: `model.safetensors` + `config.json` (`save_pretrained`; a `model.custom` model: its state dict + `custom_model.json`, the function, model section, vocabulary size and class), tokenizer files, `train_state.pt` (optimizer, scheduler, grad scaler, RNG states, data position), `config.yaml`, `checksums.json` (size and sha256 of each file, verified on resume and by eval); newest `train.keep_checkpoints` kept",
)
DAMAGED_CHECKPOINTS = _f(
    "checkpoints/<step>.damaged/",
    "train",
    "dir",
    "a checkpoint whose files failed their checksums or did not load, moved aside (never deleted) with `WHY.txt`; training resumed from the newest intact one",
)
BEST_CHECKPOINT = _f(
    "checkpoints/best/",
    "train",
    "dir",
    "`train.keep_best`: the checkpoint of the validation pass with the best `metric` (files as above, never rotated), `best.json` (step, metric, value); `eval.checkpoint: best` evaluates it",
)
MIRROR = _f(
    "mirror/",
    "train",
    "dir",
    "`train.mirror`: the metrics as TensorBoard events (`tensorboard/`) and a W&B offline run (`wandb/offline-run-*/`), readable by `make import`",
)
FRAME_CACHE = _f(
    ".cache/",
    "train, import (a log over 16 MiB), make report",
    "dir",
    "derived, safe to delete: the columns of each JSON-lines log above as parsed by the report (`.cache/train/metrics.jsonl.arrow`: Arrow IPC, ≈ 1/3 of the log's size) with the log's inode, the byte offset covered and a hash of the bytes before it; a report reads it instead of parsing the log again, parses only lines appended since, and parses everything again when the log was rewritten (`pipeline/jsonl_cache.py`)",
)
LOCK = _f(
    ".lock",
    "every stage, make report",
    "marker",
    "the run's lock (`flock`, `pipeline/lock.py`): held by every stage and by the whole of `make report`; a second command exits 2 naming the holder",
)
LOCK_INFO = _f(
    ".lock.info",
    "every stage, make report",
    "json",
    "who holds the lock: pid, host, command, since (UTC); removed with the lock",
    Record,
)
PERPLEXITY = _f(
    "eval/perplexity.json",
    "eval",
    "json",
    "checkpoint step, split, batch size, seq len, batches (valid/total), tokens, dtype, device, mean loss, perplexity, accuracy, NaN/Inf batch counts, time",
    Perplexity,
)
PERPLEXITY_ITEMS = _f(
    "eval/perplexity_items.jsonl",
    "eval",
    "jsonl",
    "one line per scored sequence: `index`, `loss_sum` (nats), `tokens`, `bytes`; the report's bootstrap CI over documents",
    Record,
)
LM_EVAL = _f("eval/lm_eval.json", "eval", "json", "lm-evaluation-harness's result object, unchanged", Record)
TASKS = _f(
    "eval/tasks.jsonl", "eval", "jsonl", "one line per (task, metric, filter), see [Evaluation](#evaluation)", TaskRow
)
HARNESS_TIMING = _f(
    "eval/harness_timing.json",
    "eval",
    "json",
    "seconds and request counts per request type, items per task",
    HarnessTiming,
)
SAMPLES = _f(
    "eval/samples/<task>.jsonl",
    "eval",
    "jsonl",
    "lm-eval's per-item results (`log_samples`): `doc_id`, `doc_hash`, `prompt_hash`, `target_hash`, `filter`, responses and each metric's value per item (documents and prompts left out); two runs on the same items are compared with a paired test",
    Record,
)
EVAL_DONE = _f("eval/DONE", "eval", "json", "marker for Make: which evaluations ran", EvalDone)
BENCH_RESULTS = _f(
    "bench/results.jsonl",
    "bench",
    "jsonl",
    "one line per variant × repeat, see [Benchmark sweeps](#benchmark-sweeps)",
    Record,
)
BENCH_SUMMARY = _f(
    "bench/summary.json", "bench", "json", "per variant: mean ± std over repeats, spread, mismatches", BenchSummary
)
BENCH_PARTS = _f(
    "bench/parts/<index>.jsonl",
    "bench-part",
    "jsonl",
    "job-array sweeps: one variant's rows per array task, merged by `make bench-collect`",
    Record,
)
BENCH_DONE = _f("bench/DONE", "bench", "json", "marker for Make: variants and rows", BenchDone)
NCCL_LOG = _f(
    "logs/nccl-rank0.log",
    "train",
    "text",
    "multi-process CUDA runs: NCCL's own log of rank 0 (`NCCL_DEBUG=INFO`, `NCCL_DEBUG_FILE`; the latest launch), parsed into provenance `nccl`",
)
JOBS = _f(
    "jobs/",
    "submit",
    "dir",
    "`make submit`: job scripts `<sched>-<UTC time>.sh`, `submitted.jsonl` (job ids), the jobs' logs",
)
ARCHIVE = _f(
    "archive/<UTC time>/",
    "train",
    "dir",
    "earlier outputs made from different train inputs, moved aside (never deleted)",
)
IMPORT = _f(
    "import/import.json",
    "import",
    "json",
    "imported runs only: tool, source path, UTC time, every file read (path, bytes, sha256), planned steps and where they came from, warnings, the tool's end-of-run summary, environment facts the source states",
    ImportRecord,
)
IMPORT_CONFIG = _f(
    "import/config.yaml",
    "import",
    "yaml",
    "the config derived from the source (stands in for `experiments/<EXP>.yaml`)",
)
IMPORT_SOURCE_CONFIG = _f("import/source_config.yaml", "import", "yaml", "the tool's own config, verbatim")

SUMMARY = _f(
    "summary.json",
    "report, make index",
    "json",
    "the run's `make index` row (status, checks by severity, steps, date, commit, device, key metrics) with the size, mtime and inode of every file it was computed from, the baseline's and a hash of the report code; recomputed whenever any of them differs, so `make index` parses no log whose summary is current",
    Summary,
)

FILES: tuple[RunFile, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, RunFile))


REPAIRED = ("provenance.json", "train/DONE")  # records that carry `repairs`: damage a stage found and healed


def repairs(run_root: Path) -> list[str]:
    """What stages healed in this run (a damaged checkpoint skipped, log lines cut, provenance rebuilt): each a
    line for the report's `damaged_files` check."""
    out: list[str] = []
    for spec in (PROVENANCE, TRAIN_DONE):
        record = spec.read(run_root)
        notes = record.get("repairs") if record else None
        out += [str(n) for n in notes] if isinstance(notes, list) else []
    return out


LOGS = (METRICS, VALIDATION, EXTRA)  # the JSON-lines logs a report reads through FRAME_CACHE
CACHE_MIN_BYTES = 16 << 20  # ≈ 40K metric lines; a shorter log parses in < 0.2 s: the report caches it itself


def cache_logs(run_root: Path) -> None:
    """The report's columnar cache of each long log, written by the stage that finished writing it (train,
    import), so the first report of a long run is as fast as the next (pipeline/jsonl_cache.py)."""
    for spec in LOGS:
        path = spec.at(run_root)
        try:
            if path.is_file() and path.stat().st_size >= CACHE_MIN_BYTES:
                jsonl.warm_cache(path, spec.cache_at(run_root))
        except Exception as exc:  # noqa: BLE001 - derived data: the stage's work is done, the report parses instead
            log.warning("%s: its columnar cache was not written (%s: %s)", spec.path, type(exc).__name__, exc)


def samples_files(run_root: Path) -> list[Path]:
    """Every `eval/samples/<task>.jsonl` of a run, sorted by task."""
    folder = Path(run_root) / "eval" / "samples"
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def read_samples(run_root: Path, problems: list[str]) -> dict[str, list[dict]]:
    """task -> its per-item rows (the torn-line rule of pipeline/jsonl.py)."""
    out = {}
    for path in samples_files(run_root):
        rel = f"eval/samples/{path.name}"
        out[path.stem] = [obj for _, obj in jsonl.read_lenient(path, problems, rel, "doc_id")]
    return out


def markdown_table() -> str:
    """The README's run-directory table, one row per file (`python -m pipeline.records` prints it)."""
    rows = ["| Path | Written by | Content |", "|---|---|---|"]
    rows += [f"| `{f.path}` | {f.writer} | {f.description} |" for f in FILES]
    return "\n".join(rows) + "\n"


def matches(spec: RunFile, relative: str) -> bool:
    """Whether a path inside a run directory is the file `spec` declares (placeholders match one name)."""
    pattern = re.escape(spec.path).replace(r"\<", "<").replace(r"\>", ">")
    pattern = re.sub(r"<[^>]+>", r"[^/]+", pattern)
    return re.fullmatch(pattern + (".*" if spec.path.endswith("/") else ""), relative) is not None


if __name__ == "__main__":
    print(markdown_table(), end="")
