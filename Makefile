# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# GPU users: create .venv with your own torch build first; it is kept (we only install torch when none imports).
TORCH_SPEC ?= torch==2.13.0

# Two torch threads spinning on a busy 2-core box can be 100x slower: passive waits and a bounded thread count.
export OMP_WAIT_POLICY ?= PASSIVE
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED ?= 1

PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

.PHONY: setup demo test test-slow bench models clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/diffusion-canon demo --output outputs/demo

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
	rm -rf $(VENV) outputs build src/*.egg-info
