# Generated from pipeline/stages.py by `make stages.mk`; do not edit (tests/test_stages.py checks it).
# DEPS_<stage>: the outputs it waits for, set per run in runs/<EXP>/stamps/targets.mk by resolve.
STAGES := prepare train eval bench report
HELP_prepare := tokenizer + token streams in runs/<EXP>/prepared/
HELP_train := train the model (resumes from the newest checkpoint)
HELP_eval := perplexity + lm-evaluation-harness
HELP_bench := benchmark sweep: each variant x repeat in a fresh process
HELP_report := render reports/<EXP>/report.md (and report.<lang>.md)

REPORT_CODE := $(shell find pipeline/report templates pipeline/locale -type f -not -name '*.pyc' 2>/dev/null)
# A repeat/sweep (MEMBERS set by its targets.mk) has its own rules in the Makefile.
ifeq ($(strip $(MEMBERS)),)

DEPS_prepare ?=
$(RUN)/prepared/DONE: $(RUN)/stamps/prepare.sha256 $(DEPS_prepare)
	$(RUN_PY) -m pipeline prepare $(RUN)
_prepare: $(RUN)/prepared/DONE

DEPS_train ?= $(RUN)/prepared/DONE
$(RUN)/train/DONE: $(RUN)/stamps/train.sha256 $(DEPS_train)
	$(TRAIN_CMD) $(RUN)
_train: $(RUN)/train/DONE

DEPS_eval ?= $(RUN)/train/DONE
$(RUN)/eval/DONE: $(RUN)/stamps/eval.sha256 $(DEPS_eval)
	$(RUN_PY) -m pipeline eval $(RUN)
_eval: $(RUN)/eval/DONE

DEPS_bench ?= $(RUN)/prepared/DONE
$(RUN)/bench/DONE: $(RUN)/stamps/bench.sha256 $(DEPS_bench)
	$(RUN_PY) -m pipeline bench $(RUN)
_bench: $(RUN)/bench/DONE

DEPS_report ?= $(RUN)/prepared/DONE $(RUN)/train/DONE $(RUN)/eval/DONE
REPORT_OUTPUTS ?= $(REPORT_DIR)/report.md
$(REPORT_OUTPUTS) &: $(RUN)/stamps/report.sha256 $(DEPS_report) $(COMPARE_INPUTS) $(REPORT_CODE) $(wildcard $(REPORT_DIR)/notes.md $(RUN)/stamps/layout)
	$(RUN_PY) -m pipeline report $(RUN) --out $(REPORT_DIR)
_report: $(REPORT_OUTPUTS)
endif
