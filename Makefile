# labnote: experiment YAML -> runs/<EXP>/ -> reports/<EXP>/report.md
#
#   make report EXP=smoke                 # venv (first time), then every stage that is out of date
#   make report EXP=smoke SET="train.steps=50 model.dim=64"
#   make train|eval|prepare EXP=…         # one stage (and what it needs)
#   make test                             # the test suite
#   make clean EXP=…                      # delete runs/<EXP>/
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
SET_ARGS := $(if $(strip $(SET)),--set "$(SET)")

# Stages run offline (compute nodes have no internet); `make data` is the one target that goes online.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

# `make … PY=/path/to/python` uses an existing environment instead of building .venv.
VENV_STAMP := $(if $(filter command line,$(origin PY)),,$(VENV)/.installed)
TEMPLATE_FILES := $(shell find templates -type f 2>/dev/null)
REPORT_CODE := $(wildcard pipeline/report/*.py)

.PHONY: help venv resolve prepare train eval bench report test clean data check bench-eval FORCE \
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
	@$(PY) -m pipeline resolve $(EXP) $(SET_ARGS)

check: $(VENV_STAMP)
	@$(PY) -m pipeline resolve $(EXP) $(SET_ARGS) --check

prepare train eval bench report: resolve
	@$(MAKE) _$@ EXP=$(EXP)

# Which stage outputs the report needs (from the experiment's `stages:`), written by resolve.
-include $(RUN)/stamps/targets.mk

_prepare: $(RUN)/prepared/DONE
_train: $(RUN)/train/DONE
_eval: $(RUN)/eval/DONE
_bench: $(RUN)/bench/DONE
_report: $(REPORT_DIR)/report.md

$(RUN)/prepared/DONE: $(RUN)/stamps/prepare.sha256
	$(PY) -m pipeline prepare $(RUN)

$(RUN)/train/DONE: $(RUN)/stamps/train.sha256 $(RUN)/prepared/DONE
	$(PY) -m pipeline train $(RUN)

$(RUN)/eval/DONE: $(RUN)/stamps/eval.sha256 $(RUN)/train/DONE
	$(PY) -m pipeline eval $(RUN)

$(RUN)/bench/DONE: $(RUN)/stamps/bench.sha256 $(BENCH_DEPS)
	$(PY) -m pipeline bench $(RUN)

$(REPORT_DIR)/report.md: $(RUN)/stamps/report.sha256 $(STAGE_OUTPUTS) $(TEMPLATE_FILES) $(REPORT_CODE)
	$(PY) -m pipeline report $(RUN) --out $(REPORT_DIR)

# Prefetch datasets/tokenizers into HF_HOME on a machine with internet (a login node).
data: $(VENV_STAMP)
	HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 LABNOTE_ONLINE=1 $(PY) -m pipeline data $(EXP) $(SET_ARGS)

clean:
	rm -rf $(RUN)

# ---------------------------------------------------------------------------- benchmarks
# Eval-stage speed on seed-000-shaped tasks. GPU: make bench-eval; CPU-sized: make bench-eval BENCH_ARGS="--scale 0.01 --shape tiny --device cpu --dtype float32"
BENCH_ARGS ?= --device cuda --batch-size 64
bench-eval: $(VENV_STAMP)
	$(PY) benchmarks/eval_harness.py $(BENCH_ARGS)

# ---------------------------------------------------------------------------- tests
test: $(VENV_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
