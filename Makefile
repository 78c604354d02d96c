# labnote: experiment YAML -> runs/<EXP>/ -> reports/<EXP>/report.md.  `make help` lists every target.
#
# Each stage is a file target; `resolve` rewrites runs/<EXP>/stamps/<stage>.sha256 only when the inputs
# of that stage change, so Make reruns exactly the stages a config edit affects. The stages and their rules
# come from the stage table, pipeline/stages.py (generated into pipeline/stages.mk).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY ?= $(VENV)/bin/python
EXP ?= smoke
SET ?=
# MEMBER=<path>: one member run of a repeat/sweep, runs/<EXP>/<path>/ (e.g. seed-1, lr-3e-3/seed-0).
MEMBER ?=
RUN := runs/$(EXP)$(if $(MEMBER),/$(MEMBER))
REPORT_DIR := reports/$(EXP)$(if $(MEMBER),/$(MEMBER))
# REPORT_LANG=ja and BASELINE=<exp> are shorthands for SET="report.language=ja report.compare_to=<exp>";
# SEEDS="0 1 2" for SET="repeat.seeds=[0,1,2]" (one member run per seed, pipeline/sweep.py).
comma := ,
space := $(subst ,, )
SEEDS ?=
# REPORT_LANG=en,ja renders both languages side by side (report.md, report.ja.md).
LANG_VALUE = $(if $(findstring $(comma),$(REPORT_LANG)),[$(REPORT_LANG)],$(REPORT_LANG))
SET_ALL := $(strip $(SET) $(if $(REPORT_LANG),report.language=$(LANG_VALUE)) $(if $(BASELINE),report.compare_to=$(BASELINE)) \
             $(if $(strip $(SEEDS)),repeat.seeds=[$(subst $(space),$(comma),$(strip $(SEEDS)))]))
SET_ARGS := $(if $(SET_ALL),--set "$(SET_ALL)")

# ---------------------------------------------------------------------------- names (before anything else)
# EXP, EXPS, BASELINE and NAME become paths (runs/<EXP>/, reports/<EXP>/): one path component each, never
# empty, '..' or with spaces. `make clean` needs EXP= given explicitly. The CLI checks the same (pipeline/names.py).
NAME_RE := ^[A-Za-z0-9][A-Za-z0-9._-]*$$
# The stage names come from the stage table (pipeline/stages.mk, included further down once the run's targets are known).
EXP_GOALS := $(shell sed -n 's/^STAGES := //p' pipeline/stages.mk) resolve check data clean submit import bench-part \
             bench-collect html aggregate peek
bad_name = $(shell n='$(subst ','"'"',$(2))'; [[ "$$n" =~ $(NAME_RE) ]] || { [ -n "$$n" ] && w="'$$n' is not a valid name" \
  || w=empty; printf 'error: %s: %s: use letters, digits, ., _ and -, starting with a letter or digit\n' '$(1)' "$$w" >&2; \
  echo bad; })
name_error = $(if $(call bad_name,$(1),$(2)),$(error stopped: invalid $(1)))
GOALS := $(or $(MAKECMDGOALS),$(.DEFAULT_GOAL))
ifneq ($(filter $(EXP_GOALS),$(GOALS)),)
ifneq ($(filter clean,$(GOALS)),)
ifeq ($(origin EXP),file)
$(shell echo 'error: EXP: make clean deletes runs/<EXP>/; name it, e.g. make clean EXP=smoke' >&2)
$(error stopped: EXP not given)
endif
endif
$(call name_error,EXP,$(EXP))
endif
$(if $(BASELINE),$(call name_error,BASELINE,$(BASELINE)))
$(foreach e,$(EXPS),$(call name_error,EXPS,$(e)))
$(foreach c,$(subst /, ,$(MEMBER)),$(call name_error,MEMBER,$(c)))
ifneq ($(shell [[ '$(subst ','"'"',$(or $(JOBS),1))' =~ ^[1-9][0-9]*$$ ]] || echo bad),)
$(shell echo "error: JOBS: expected how many members run at once (1, 2, …), got '$(JOBS)'" >&2)
$(error stopped: invalid JOBS)
endif

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
               $(if $(HF_HOME),HF_HOME=$(HF_HOME)) LABNOTE_LOCK=$${LABNOTE_LOCK:-}
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

# The run's lock (pipeline/lock.py, stdlib only: the host's python runs it under any RUNTIME): `make report`
# holds runs/<EXP>/.lock from resolve to the last stage; a second one exits 2 naming the holder. `make -n`
# takes nothing (the sub-make only prints).
LOCK_PY := $(if $(filter native,$(RUNTIME)),$(PY),$(PYTHON))
LOCK = $(LOCK_PY) -m pipeline.lock $(RUN) $(if $(findstring n,$(firstword -$(MAKEFLAGS))),--dry-run)

.PHONY: peek test-fast compare-needs-exps lint format help venv resolve test clean data check bench-eval bench-train bench-import bench-scale gpu-wheels gpu-check submit index compare import bench-part bench-collect sif container-test FORCE stages.mk

help: ## this list: every public target, one line each
	@echo 'labnote: experiment YAML -> runs/<EXP>/ -> reports/<EXP>/report.md (EXP=… names the experiment)'
	@echo 'Stages (each runs what it depends on; SET="a.b=1" overrides, RUNTIME=apptainer|podman|docker):'
	@$(foreach s,$(STAGES),printf '  %-15s %s\n' '$(s)' '$(HELP_$(s))';)
	@echo 'Other targets:'
	@grep -hE '^[a-zA-Z][a-zA-Z0-9_.-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## (.*)$$/\1\t\2/' | \
	  awk -F'\t' '{ printf "  %-15s %s\n", $$1, $$2 }'

venv: $(VENV)/.installed ## create .venv from requirements.txt + requirements.lock (once)

$(VENV)/.installed: requirements.txt requirements-test.txt requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt -c requirements.lock
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-test.txt -c requirements.lock
	@touch $@

# ---------------------------------------------------------------------------- stages
MEMBER_ARGS := $(if $(MEMBER),--member $(MEMBER))
# The public targets validate + freeze the config first, then run a sub-make that compares file times.
resolve: $(VENV_STAMP) ## validate the experiment and freeze runs/<EXP>/config.yaml + stamps
	@$(RUN_PY) -m pipeline resolve $(EXP) $(SET_ARGS) $(MEMBER_ARGS)

check: $(VENV_STAMP) ## validate the experiment, write nothing
	@$(RUN_PY) -m pipeline resolve $(EXP) $(SET_ARGS) $(MEMBER_ARGS) --check

# How many processes train uses and each stage's prerequisites for this run: written by resolve
# (runs/<EXP>/stamps/targets.mk); before the first resolve (e.g. under `make -n`) the defaults apply.
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

# One rule per stage, generated from the stage table (pipeline/stages.py): `make stages.mk` after editing it.
include pipeline/stages.mk
.PHONY: $(STAGES) $(addprefix _,$(STAGES)) $(addprefix _locked_,$(STAGES)) _bench-part _bench-collect
.PHONY: aggregate _aggregate _locked_aggregate

$(STAGES): $(VENV_STAMP)
	@$(LOCK) -- $(MAKE) _locked_$@ EXP=$(EXP)
$(addprefix _locked_,$(STAGES)): _locked_%: resolve
	@$(MAKE) _$* EXP=$(EXP)

# ---------------------------------------------------------------------------- repeats and sweeps
# An experiment with repeat:/sweep: (or SEEDS=…) has members; resolve writes their names into its
# stamps/targets.mk (MEMBERS, pipeline/sweep.py) and the single-run rules of stages.mk step aside. Each member
# is a normal run made by its own `make <stage> EXP=<EXP> MEMBER=<member>` (own lock, stamps, provenance),
# through `member/<stage>/<member>`, which records how it ended in its member.json (pipeline/member.py, stdlib
# only like the lock). -k: a failing member never stops the others, and the aggregate report is written anyway.
# JOBS=N: N members at once, each with cores/N threads.
JOBS ?= 1
member_goal = $(firstword $(subst /, ,$*))
member_name = $(patsubst $(member_goal)/%,%,$*)
member/%: FORCE
	@$(LOCK_PY) -m pipeline.member $(RUN) $(member_name) --goal $(member_goal) --jobs $(JOBS) -- \
	  $(MAKE) $(member_goal) EXP=$(EXP) MEMBER=$(member_name)
FORCE:

ifneq ($(strip $(MEMBERS)),)
$(addprefix _,$(STAGES)): _%:
	@rc=0; $(MAKE) -k -j$(JOBS) $(addprefix member/$*/,$(MEMBERS)) || rc=$$?; \
	  $(if $(filter report,$*),$(MAKE) _aggregate EXP=$(EXP) || rc=$$?;) \
	  [ $$rc = 0 ] || { $(LOCK_PY) -m pipeline.member --summary $(RUN) || true; exit 2; }
MEMBER_OUTPUTS = $(wildcard $(foreach m,$(MEMBERS),$(RUN)/$(m)/member.json $(RUN)/$(m)/*/DONE $(REPORT_DIR)/$(m)/report*.md))
$(REPORT_OUTPUTS) &: $(RUN)/members.json $(MEMBER_OUTPUTS) $(REPORT_CODE) $(wildcard $(RUN)/stamps/layout)
	$(RUN_PY) -m pipeline aggregate $(RUN) --out $(REPORT_DIR)
_aggregate: $(REPORT_OUTPUTS)
else
_aggregate:
	@echo 'error: EXP: $(EXP) has no members (no repeat: or sweep:); SEEDS="0 1 2" runs one per seed' >&2; exit 2
endif
$(RUN)/members.json: ;

aggregate: $(VENV_STAMP) ## the aggregate report of a repeat/sweep from its members as they are (runs nothing)
	@$(LOCK) -- $(MAKE) _locked_aggregate EXP=$(EXP)
_locked_aggregate: resolve
	@$(MAKE) _aggregate EXP=$(EXP)

stages.mk: pipeline/stages.py ## regenerate pipeline/stages.mk from the stage table
	$(PY) -m pipeline.stages > pipeline/stages.mk.tmp && mv pipeline/stages.mk.tmp pipeline/stages.mk

# Tables across runs, from their run directories: all runs (index), or the runs named in EXPS (compare, the
# first is the reference). File targets: they are rebuilt when a run's stamps, stage markers or import change.
LANGS = $(or $(subst $(comma), ,$(REPORT_LANG)),en)
lang_files = $(foreach l,$(LANGS),$(1)$(if $(filter en,$(l)),,.$(l)).md)
run_files = $(wildcard runs $(foreach e,$(1),runs/$(e)/stamps/*.sha256 runs/$(e)/*/DONE runs/$(e)/import/import.json))
LANG_ARGS = $(foreach l,$(LANGS),--lang $(l))

INDEX_FILES := $(call lang_files,reports/README)
index: $(INDEX_FILES) ## reports/README.md: one row per run (REPORT_LANG=ja: README.ja.md)
$(INDEX_FILES) &: $(call run_files,*) $(REPORT_CODE) | $(HOST_STAMP)
	$(PY) -m pipeline index $(LANG_ARGS)

EXPS ?=
space := $(subst ,, )
NAME ?= $(subst $(space),-,$(strip $(EXPS)))
COMPARE_FILES := $(call lang_files,reports/compare/$(NAME))
compare: $(if $(strip $(EXPS)),$(COMPARE_FILES),compare-needs-exps) ## EXPS="a b": reports/compare/a-b.md
$(COMPARE_FILES) &: $(call run_files,$(EXPS)) $(REPORT_CODE) | $(HOST_STAMP)
	$(PY) -m pipeline index $(EXPS) --name $(NAME) $(LANG_ARGS)
compare-needs-exps:
	@echo 'error: EXPS: name at least two experiments, e.g. make compare EXPS="smoke smoke_lr"' >&2; exit 2

# A live look at a run whose train stage is still at work (from another shell, or a job's periodic step): the
# report from its logs so far into reports/<EXP>/peek/, status "running". No lock, no stamps: the stage never waits.
peek: $(HOST_STAMP) ## the report so far while the train stage runs -> reports/<EXP>/peek/report.md (no lock)
	@$(PY) -m pipeline peek $(RUN) --out $(REPORT_DIR)/peek

# Runs trained/evaluated by other tools -> runs/<EXP>/, then `make report EXP=<EXP>` as usual:
#   make import SRC=<dir or file> FROM=<tool> EXP=<name> [MAP="loss=col …"] [STEPS=N]   (tools: python -m pipeline import --help)
SRC ?=
FROM ?=
import: $(HOST_STAMP) ## SRC=<path> FROM=<tool> EXP=<name>: another tool's run -> runs/<name>/
	$(PY) -m pipeline import "$(SRC)" --from "$(FROM)" --exp $(EXP) $(if $(MAP),--map "$(MAP)") $(if $(STEPS),--steps-planned $(STEPS)) $(if $(VERSION),--version $(VERSION))

# An imported run's report waits for its import record (there is no stage to remake it).
$(RUN)/import/import.json: ;

# Prefetch datasets/tokenizers into HF_HOME on a machine with internet (a login node).
data: $(HOST_STAMP) ## on a machine with internet: fetch the hub datasets/tokenizers/tasks into HF_HOME
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 LABNOTE_ONLINE=1 $(PY) -m pipeline data $(EXP) $(SET_ARGS)

# Job-array pieces of a bench sweep (make submit … BENCH_ARRAY=1): one variant per task, then collect.
# Array tasks hold the run's lock shared (side by side, never with a `make report`); collect holds it alone.
bench-part: $(VENV_STAMP) ## INDEX=<n>: one variant of a bench sweep (a job-array task)
	@$(LOCK) --shared -- $(MAKE) _bench-part EXP=$(EXP)
_bench-part: resolve
	$(RUN_PY) -m pipeline bench-part $(RUN) $(INDEX)

bench-collect: $(VENV_STAMP) ## merge the job-array parts of a bench sweep
	@$(LOCK) -- $(MAKE) _bench-collect EXP=$(EXP)
_bench-collect: resolve
	$(RUN_PY) -m pipeline bench-part $(RUN) collect

# A batch job that runs `make report` for this experiment inside the allocation (same RUNTIME/SIF/PY).
SCHED ?= slurm
submit: $(HOST_STAMP) ## SCHED=slurm|pjm: a job running `make report`; a repeat/sweep: job array + aggregate (DRY_RUN=1)
	@$(PY) -m pipeline submit $(EXP) --sched $(SCHED) $(SET_ARGS) \
	  --make-args "$(strip RUNTIME=$(RUNTIME) $(if $(SIF),SIF=$(abspath $(SIF))) $(if $(filter command line,$(origin PY)),PY=$(PY)))" \
	  $(if $(DRY_RUN),--dry-run) $(if $(BENCH_ARRAY),--bench-array)

clean: ## delete runs/<EXP>/ (EXP= required; waits for no one: refuses while the run is in use)
	$(LOCK) -- rm -rf $(RUN)

# ---------------------------------------------------------------------------- benchmarks
# Eval-stage speed on seed-000-shaped tasks. GPU: make bench-eval; CPU-sized: make bench-eval BENCH_ARGS="--scale 0.01 --shape tiny --device cpu --dtype float32"
BENCH_ARGS ?= --device cuda --batch-size 64
bench-eval: $(VENV_STAMP) ## time the harness path on seed-000-shaped tasks (BENCH_ARGS=…)
	$(PY) benchmarks/eval_harness.py $(BENCH_ARGS)

# Train-stage speed: the stage's whole step path vs a bare PyTorch loop, interleaved; tokens/s, MFU, paired
# overhead with its 95% CI. GPU (debug_3 shape, bf16, compile): make bench-train; CPU (smoke shape):
# make bench-train BENCH_TRAIN_ARGS="--shape smoke --device cpu --threads 1"
BENCH_TRAIN_ARGS ?= --device cuda
bench-train: $(VENV_STAMP) ## tokens/s, MFU, paired overhead (95% CI) over a bare loop (BENCH_TRAIN_ARGS=…)
	$(PY) benchmarks/train_throughput.py $(BENCH_TRAIN_ARGS)

# Import speed: every importer on synthetic 10K / 100K-entry sources (benchmarks/synthetic_sources.py), read and
# write timed apart; CPU only. One source, smaller: make bench-import BENCH_IMPORT_ARGS="--sizes 1000 --sources lingua"
bench-import: $(VENV_STAMP) ## time every importer on synthetic 10K/100K-entry sources (BENCH_IMPORT_ARGS=…)
	$(PY) benchmarks/import_scale.py $(BENCH_IMPORT_ARGS)
# Time and peak memory per stage part at growing input sizes, with each part's growth exponent (log-log slope).
# Quick sizes by default (minutes); SCALE_ARGS=--full for the issue's (10M-1B tokens, 1M log lines, 100K entries).
SCALE_ARGS ?= --quick
bench-scale: $(HOST_STAMP) ## time + peak memory per stage part vs input size, growth exponents (SCALE_ARGS=--full)
	$(PY) benchmarks/scale.py $(SCALE_ARGS)

# The one GPU check (benchmarks/gpu_check.sh, ≤ 8 min on one H100/H200). A GPU machine may have no network: on a
# machine with one, `make gpu-wheels` downloads every pin of requirements.lock (the whole closure, torch excluded;
# sdists where a package has no wheel) for GPU_PY/GPU_PLATFORM into the git-ignored .whl/;
# carry .whl/ with the checkout and gpu_check.sh installs from it offline.
GPU_PY ?= 3.12
GPU_PLATFORM ?= manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
gpu-wheels: $(HOST_STAMP) ## download the wheels a bare CUDA PyTorch machine lacks into .whl/ (GPU_PY=3.12)
	@mkdir -p .whl; while read -r pin; do \
	  $(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) --implementation cp \
	    $(foreach p,$(GPU_PLATFORM),--platform $(p)) -d .whl "$$pin" 2>/dev/null \
	  || $(PY) -m pip download -q --no-deps --no-binary=:all: -d .whl "$$pin" \
	  || { echo "error: gpu-wheels: cannot download $$pin" >&2; exit 1; }; \
	done < <(grep -v -E '^(torch|pytest|ruff)([=<>~! ]|$$)|^#|^$$' requirements.lock); du -sh .whl

gpu-check: ## benchmarks/gpu_check.sh on this machine's GPU (GPU_CHECK_ARGS=--cpu-dry-run on CPU)
	PY=$(PY) benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

# ---------------------------------------------------------------------------- tests
# pytest-xdist: TEST_JOBS worker processes (every core, at most 4), each test file on one worker (its module
# fixtures built once). TEST_JOBS=0 runs in this process (pdb, -x).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
XDIST = $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)
test: $(VENV_STAMP) ## the whole test suite, as CI runs it (PYTEST_ARGS=…, TEST_JOBS=…)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(VENV_STAMP) ## the suite without the tests marked slow: the development loop
	$(PY) -m pytest -q -m "not slow" $(XDIST) $(PYTEST_ARGS)

# ruff: lint rules and formatting, configured in pyproject.toml. `make format` rewrites the files.
lint: $(HOST_STAMP) ## ruff check + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(HOST_STAMP) ## ruff format + fixes, in place
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# ---------------------------------------------------------------------------- containers
# apptainer.def is generated from the Containerfile (spython) and committed; tests/test_container.py fails on drift.
apptainer.def: Containerfile containers/convert.py ## regenerate apptainer.def from the Containerfile (spython)
	$(PY) containers/convert.py Containerfile > $@.tmp && mv $@.tmp $@

# Build the SIF where Apptainer runs (a workstation); copy it to the cluster. Alternative without a registry:
#   podman build -t labnote . && podman save --format docker-archive -o labnote.tar labnote \
#     && apptainer build labnote.sif docker-archive:labnote.tar
sif: apptainer.def ## apptainer build $(SIF) (on a workstation with Apptainer)
	apptainer build $(if $(FAKEROOT),--fakeroot) $(or $(SIF),labnote.sif) apptainer.def

# Optional, slow, not in CI: build the OCI image with podman and run the smoke experiment inside it.
container-test: ## podman build + the smoke experiment inside the image (slow, not in CI)
	@command -v podman >/dev/null || { echo "container-test: podman not found (apt-get install podman)"; exit 2; }
	podman build -t $(IMAGE) .
	$(MAKE) report EXP=smoke RUNTIME=podman IMAGE=$(IMAGE) CONTAINER_GPU_FLAGS=

# ---------------------------------------------------------------------------- report languages and HTML
# Message catalogs (pipeline/locale/, see pipeline/report/i18n.py): extract every msgid from pipeline/ and the
# templates into messages.pot, merge it into each language's messages.po (new msgids arrive untranslated:
# translate them there), then compile each catalog as a check (the .mo is not kept; reports compile in memory).
PYBABEL ?= $(PY) -m babel.messages.frontend
.PHONY: i18n html
i18n: $(HOST_STAMP) ## Babel: extract messages, merge them into each catalog, check they compile
	$(PYBABEL) extract -F babel.cfg -o pipeline/locale/messages.pot --project labnote --no-wrap --sort-by-file \
	  --omit-header -c TRANSLATORS: .
	$(PYBABEL) update -i pipeline/locale/messages.pot -d pipeline/locale -D messages --no-wrap \
	  --no-fuzzy-matching --ignore-obsolete
	@for po in pipeline/locale/*/LC_MESSAGES/messages.po; do \
	  $(PYBABEL) compile --statistics -i "$$po" -o /dev/null -l "$$(basename $$(dirname $$(dirname $$po)))"; done

# A self-contained reports/<EXP>/report.html (and report.ja.html when the Japanese report exists).
html: $(HOST_STAMP) ## a self-contained reports/<EXP>/report.html (images inlined; report.ja.html too)
	$(PY) -m pipeline html $(wildcard $(REPORT_DIR)/report.md $(REPORT_DIR)/report.ja.md)
