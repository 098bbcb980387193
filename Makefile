# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# GPU users: create .venv with your own torch build first; it is kept (we only install torch when none imports).
TORCH_SPEC ?= torch==2.13.0
# The exact versions `make test` and CI install (all but torch, which is installed first, above); `make lock` refreshes it.
LOCK   := constraints.txt

# Two torch threads spinning on a busy 2-core box can be 100x slower: passive waits and a bounded thread count.
export OMP_WAIT_POLICY ?= PASSIVE
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

.PHONY: setup demo demo-train test test-slow test-latest lock bench models clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	@$(BIN)/pip install -q -c $(LOCK) -e ".[test]" || { echo >&2; echo "error: the locked versions in $(LOCK) could \
	not be installed (a release withdrawn, or no longer matching pyproject.toml). Refresh the lock with 'make lock' \
	(see README, Dependencies), or run 'make test-latest' to test without it." >&2; exit 1; }
	@touch $(STAMP)

# Resolve pyproject.toml's ranges afresh against the registries in a scratch venv and write the result to $(LOCK).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q "$(TORCH_SPEC)"
	.venv-lock/bin/pip install -q ".[test]"
	{ echo "# Written by 'make lock' on $$(date -u +%F) from pyproject.toml (dependencies + the test extra), torch excluded."; \
	  .venv-lock/bin/pip freeze --all --exclude pip --exclude diffusion-canon --exclude torch; } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

# The suite on the newest releases pyproject.toml admits, without the lock: drift shows here before it reaches CI.
LATEST := .venv-latest

test-latest:
	@test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	@$(LATEST)/bin/python -c "import torch" 2>/dev/null || $(LATEST)/bin/pip install "$(TORCH_SPEC)"
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST)/bin/pip list --format=freeze | grep -iE "^(diffusers|transformers|accelerate|peft|datasets|huggingface.hub|safetensors|tokenizers|numpy)=="
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" --durations=15

demo: $(STAMP)
	$(BIN)/diffusion-canon demo --output outputs/demo

# the gallery plus the sections that train models in-process (fine-tuning: about six more minutes on a 2-core CPU)
demo-train: $(STAMP)
	$(BIN)/diffusion-canon demo --output outputs/demo --train

test: $(STAMP)
	$(PYTEST) -m "not slow" --durations=15

test-slow: $(STAMP)
	$(PYTEST) -m slow --durations=15

# Every benchmark that runs without arguments (those needing a reference checkout print "skipped"). Q3's cascade
# benchmark trains several models in stages: its commands are in benchmarks/RESULTS.md.
BENCHMARKS := $(filter-out benchmarks/bench_cascade.py,$(wildcard benchmarks/bench_*.py))

bench: $(STAMP)
	@for f in $(BENCHMARKS); do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Retrain every shipped default from its pipelines/NAME/recipe.sh into $(MODELS_DIR)/NAME: hours on a 2-core CPU
# (each RECIPE.md gives the measured time), minutes on a GPU.
MODELS_DIR ?= out/models

models: $(STAMP)
	@for r in pipelines/*/recipe.sh; do n=$$(basename $$(dirname $$r)); echo "== $$n"; \
	  PYTHON=$(BIN)/python bash $$r $(MODELS_DIR)/$$n || exit 1; done

clean:
	rm -rf $(VENV) $(LATEST) .venv-lock outputs build src/*.egg-info
