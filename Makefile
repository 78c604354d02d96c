# labnote: experiment YAML -> runs/<EXP>/ -> reports/<EXP>/report.md
#
#   make report EXP=smoke                 # venv (first time), then every stage that is out of date
#   make report EXP=smoke SET="train.steps=50 model.dim=64"
#   make train|eval|prepare EXP=…         # one stage (and what it needs)
#   make test                             # the test suite
#   make clean EXP=…                      # delete runs/<EXP>/
#   make report EXP=… RUNTIME=apptainer SIF=labnote.sif   # every stage inside the container
#   make submit EXP=… SCHED=slurm|pjm [RUNTIME=apptainer SIF=…]   # a batch job that runs `make report`
#   make import SRC=<path> FROM=lingua|hf-trainer|lightning|lm-eval EXP=<name>   # another trainer's run
#
# Each stage is a file target; `resolve` rewrites runs/<EXP>/stamps/<stage>.sha256 only when the inputs
# of that stage change, so Make reruns exactly the stages a config edit affects.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY ?= $(VENV)/bin/python
EXP ?= smoke
SET ?=
RUN := runs/$(EXP)
REPORT_DIR := reports/$(EXP)
# REPORT_LANG=ja and BASELINE=<exp> are shorthands for SET="report.language=ja report.compare_to=<exp>".
SET_ALL := $(strip $(SET) $(if $(REPORT_LANG),report.language=$(REPORT_LANG)) $(if $(BASELINE),report.compare_to=$(BASELINE)))
SET_ARGS := $(if $(SET_ALL),--set "$(SET_ALL)")

# Stages run offline (compute nodes have no internet); `make data` is the one target that goes online.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

# ---------------------------------------------------------------------------- runtime
# native: the venv (or PY=…); apptainer: `apptainer exec` of $(SIF); podman/docker: `run` of $(IMAGE).
# Containers see the project at the same path, start in it, and get the offline HF variables.
SIF ?=
IMAGE ?= labnote:latest
RUNTIME ?= $(if $(SIF),apptainer,native)
HF_BIND := $(if $(HF_HOME),--bind $(HF_HOME))
OFFLINE_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 MPLBACKEND=Agg \
               $(if $(HF_HOME),HF_HOME=$(HF_HOME))
# The image's sha256 goes into provenance; it is cached next to the SIF and recomputed when the SIF changes.
SIF_SHA = $(shell f='$(SIF)'; [ -f "$$f" ] && { [ "$$f.sha256" -nt "$$f" ] || sha256sum "$$f" | cut -c1-64 > "$$f.sha256"; cat "$$f.sha256"; })
CONTAINER_GPU_FLAGS ?= $(if $(filter docker,$(RUNTIME)),--gpus all,--device nvidia.com/gpu=all)

# `make … PY=/path/to/python` uses an existing environment instead of building .venv. Login-node targets
# (data, submit) always run natively: they need the internet or the scheduler's commands, not the GPU image.
HOST_STAMP := $(if $(filter command line,$(origin PY)),,$(VENV)/.installed)
ifeq ($(RUNTIME),native)
RUN_PY := $(PY)
VENV_STAMP := $(HOST_STAMP)
else ifeq ($(RUNTIME),apptainer)
RUN_PY = apptainer exec --nv --bind $(CURDIR):$(CURDIR) $(HF_BIND) --pwd $(CURDIR) \
         $(foreach e,$(OFFLINE_ENV),--env $(e)) --env LABNOTE_IMAGE=$(abspath $(SIF)) \
         --env LABNOTE_IMAGE_SHA256=$(SIF_SHA) $(SIF) python
VENV_STAMP :=
else ifneq ($(filter podman docker,$(RUNTIME)),)
RUN_PY = $(RUNTIME) run --rm $(CONTAINER_GPU_FLAGS) --ipc=host -v $(CURDIR):$(CURDIR) -w $(CURDIR) \
         $(if $(HF_HOME),-v $(HF_HOME):$(HF_HOME)) $(foreach e,$(OFFLINE_ENV),-e $(e)) -e LABNOTE_IMAGE=$(IMAGE) \
         --entrypoint python $(IMAGE)
VENV_STAMP :=
else
$(error RUNTIME must be native, apptainer, podman or docker, got '$(RUNTIME)')
endif
TEMPLATE_FILES := $(shell find templates -type f 2>/dev/null)
REPORT_CODE := $(wildcard pipeline/report/*.py)

.PHONY: lint format help venv resolve prepare train eval bench report test clean data check bench-eval bench-train submit index compare import bench-part bench-collect sif container-test FORCE \
        _prepare _train _eval _bench _report

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt -c requirements.lock
	@touch $@

# ---------------------------------------------------------------------------- stages
# The public targets validate + freeze the config first, then run a sub-make that compares file times.
resolve: $(VENV_STAMP)
	@$(RUN_PY) -m pipeline resolve $(EXP) $(SET_ARGS)

check: $(VENV_STAMP)
	@$(RUN_PY) -m pipeline resolve $(EXP) $(SET_ARGS) --check

prepare train eval bench report: resolve
	@$(MAKE) _$@ EXP=$(EXP)

# Which stage outputs the report needs (from the experiment's `stages:`) and how many processes train
# uses, written by resolve. The defaults apply before the first resolve (e.g. under `make -n`).
STAGE_OUTPUTS := $(RUN)/prepared/DONE $(RUN)/train/DONE $(RUN)/eval/DONE
BENCH_DEPS := $(RUN)/prepared/DONE
TRAIN_NNODES := 1
TRAIN_NPROC := 1
RDZV_PORT := 29500
COMPARE_INPUTS :=
-include $(RUN)/stamps/targets.mk

# More than one process: torchrun (DDP), one launcher per node; under Slurm with several nodes, srun starts
# the launchers and they meet at the first node of the allocation (LABNOTE_RDZV_HOST, set by the job script).
ifeq ($(TRAIN_NNODES)$(TRAIN_NPROC),11)
TRAIN_CMD = $(RUN_PY) -m pipeline train
else
TRAIN_CMD = $(if $(filter-out 1,$(TRAIN_NNODES)),srun --ntasks-per-node=1 --kill-on-bad-exit=1 )$(RUN_PY) \
            -m torch.distributed.run --nnodes=$(TRAIN_NNODES) --nproc_per_node=$(TRAIN_NPROC) \
            --rdzv_backend=c10d --rdzv_endpoint=$${LABNOTE_RDZV_HOST:-localhost}:$(RDZV_PORT) \
            --rdzv_id=$${SLURM_JOB_ID:-$${PJM_JOBID:-labnote}} -m pipeline train
endif

# Under `make -n` resolve has not run, so the stamps may not exist yet.
$(RUN)/stamps/%.sha256: ;

_prepare: $(RUN)/prepared/DONE
_train: $(RUN)/train/DONE
_eval: $(RUN)/eval/DONE
_bench: $(RUN)/bench/DONE
_report: $(REPORT_DIR)/report.md

$(RUN)/prepared/DONE: $(RUN)/stamps/prepare.sha256
	$(RUN_PY) -m pipeline prepare $(RUN)

$(RUN)/train/DONE: $(RUN)/stamps/train.sha256 $(RUN)/prepared/DONE
	$(TRAIN_CMD) $(RUN)

$(RUN)/eval/DONE: $(RUN)/stamps/eval.sha256 $(RUN)/train/DONE
	$(RUN_PY) -m pipeline eval $(RUN)

$(RUN)/bench/DONE: $(RUN)/stamps/bench.sha256 $(BENCH_DEPS)
	$(RUN_PY) -m pipeline bench $(RUN)

$(REPORT_DIR)/report.md: $(RUN)/stamps/report.sha256 $(STAGE_OUTPUTS) $(COMPARE_INPUTS) $(TEMPLATE_FILES) $(REPORT_CODE)
	$(RUN_PY) -m pipeline report $(RUN) --out $(REPORT_DIR)

# Tables across runs, from their run directories: all runs, or the runs named in EXPS (first = reference).
index: $(HOST_STAMP)
	$(PY) -m pipeline index

EXPS ?=
NAME ?= $(subst $(space),-,$(strip $(EXPS)))
space := $(subst ,, )
compare: $(HOST_STAMP)
	$(PY) -m pipeline index $(EXPS) --name $(NAME)

# Runs trained/evaluated by other tools -> runs/<EXP>/, then `make report EXP=<EXP>` as usual:
#   make import SRC=<dir or file> FROM=lingua|hf-trainer|lightning|lm-eval EXP=<name> [MAP="loss=col …"] [STEPS=N]
SRC ?=
FROM ?=
import: $(HOST_STAMP)
	$(PY) -m pipeline import "$(SRC)" --from "$(FROM)" --exp $(EXP) $(if $(MAP),--map "$(MAP)") $(if $(STEPS),--steps-planned $(STEPS))

# An imported run's report waits for its import record (there is no stage to remake it).
$(RUN)/import/import.json: ;

# Prefetch datasets/tokenizers into HF_HOME on a machine with internet (a login node).
data: $(HOST_STAMP)
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 LABNOTE_ONLINE=1 $(PY) -m pipeline data $(EXP) $(SET_ARGS)

# Job-array pieces of a bench sweep (make submit … BENCH_ARRAY=1): one variant per task, then collect.
bench-part: resolve
	$(RUN_PY) -m pipeline bench-part $(RUN) $(INDEX)

bench-collect: resolve
	$(RUN_PY) -m pipeline bench-part $(RUN) collect

# A batch job that runs `make report` for this experiment inside the allocation (same RUNTIME/SIF/PY).
SCHED ?= slurm
submit: $(HOST_STAMP)
	@$(PY) -m pipeline submit $(EXP) --sched $(SCHED) $(SET_ARGS) \
	  --make-args "$(strip RUNTIME=$(RUNTIME) $(if $(SIF),SIF=$(abspath $(SIF))) $(if $(filter command line,$(origin PY)),PY=$(PY)))" \
	  $(if $(DRY_RUN),--dry-run) $(if $(BENCH_ARRAY),--bench-array)

clean:
	rm -rf $(RUN)

# ---------------------------------------------------------------------------- benchmarks
# Eval-stage speed on seed-000-shaped tasks. GPU: make bench-eval; CPU-sized: make bench-eval BENCH_ARGS="--scale 0.01 --shape tiny --device cpu --dtype float32"
BENCH_ARGS ?= --device cuda --batch-size 64
bench-eval: $(VENV_STAMP)
	$(PY) benchmarks/eval_harness.py $(BENCH_ARGS)

# Train-stage speed: pipeline step vs a bare PyTorch loop, tokens/s and MFU. GPU (debug_3 shape, bf16,
# compile): make bench-train; CPU-sized: make bench-train BENCH_TRAIN_ARGS="--shape tiny --device cpu"
BENCH_TRAIN_ARGS ?= --device cuda
bench-train: $(VENV_STAMP)
	$(PY) benchmarks/train_throughput.py $(BENCH_TRAIN_ARGS)

# ---------------------------------------------------------------------------- tests
test: $(VENV_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff: lint rules and formatting, configured in pyproject.toml. `make format` rewrites the files.
lint: $(HOST_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(HOST_STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# ---------------------------------------------------------------------------- containers
# apptainer.def is generated from the Containerfile (spython) and committed; tests/test_container.py fails on drift.
apptainer.def: Containerfile containers/convert.py
	$(PY) containers/convert.py Containerfile > $@.tmp && mv $@.tmp $@

# Build the SIF where Apptainer runs (a workstation); copy it to the cluster. Alternative without a registry:
#   podman build -t labnote . && podman save --format docker-archive -o labnote.tar labnote \
#     && apptainer build labnote.sif docker-archive:labnote.tar
sif: apptainer.def
	apptainer build $(if $(FAKEROOT),--fakeroot) $(or $(SIF),labnote.sif) apptainer.def

# Optional, slow, not in CI: build the OCI image with podman and run the smoke experiment inside it.
container-test:
	@command -v podman >/dev/null || { echo "container-test: podman not found (apt-get install podman)"; exit 2; }
	podman build -t $(IMAGE) .
	$(MAKE) report EXP=smoke RUNTIME=podman IMAGE=$(IMAGE) CONTAINER_GPU_FLAGS=

# ---------------------------------------------------------------------------- report languages and HTML
# Message catalogs (pipeline/locale/, see pipeline/report/i18n.py): extract every msgid from pipeline/ and the
# templates into messages.pot, merge it into each language's messages.po (new msgids arrive untranslated:
# translate them there), then compile each catalog as a check (the .mo is not kept; reports compile in memory).
PYBABEL ?= $(PY) -m babel.messages.frontend
.PHONY: i18n html
i18n: $(HOST_STAMP)
	$(PYBABEL) extract -F babel.cfg -o pipeline/locale/messages.pot --project labnote --no-wrap --sort-by-file \
	  --omit-header -c TRANSLATORS: .
	$(PYBABEL) update -i pipeline/locale/messages.pot -d pipeline/locale -D messages --no-wrap \
	  --no-fuzzy-matching --ignore-obsolete
	@for po in pipeline/locale/*/LC_MESSAGES/messages.po; do \
	  $(PYBABEL) compile --statistics -i "$$po" -o /dev/null -l "$$(basename $$(dirname $$(dirname $$po)))"; done

# A self-contained reports/<EXP>/report.html (and report.ja.html when the Japanese report exists).
html: $(HOST_STAMP)
	$(PY) -m pipeline html $(wildcard $(REPORT_DIR)/report.md $(REPORT_DIR)/report.ja.md)
