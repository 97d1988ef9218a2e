# The two commands of the README: `make demo` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Re-install when the dependency declarations change.
STAMP := $(VENV)/.installed-core
STAMP_ALL := $(VENV)/.installed-all

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install install-all mmcv system-deps lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Core + dev: torch/torchvision first and exact (they install from the machine's local wheels).
$(STAMP): setup.cfg constraints.txt requirements-pos.txt | $(BIN)/python
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q --no-deps --require-hashes -r requirements-pos.txt
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

# Everything, including the detection/segmentation transfer stack (mmcv built once, cached in ~/.cache).
$(STAMP_ALL): $(STAMP) tools/install_mmcv.sh
	$(PIP) install -q -c constraints.txt -e '.[dev,transfer]'
	tools/install_mmcv.sh $(BIN)/python
	touch $@

install: $(STAMP)
install-all: $(STAMP_ALL)
mmcv: $(STAMP_ALL)

# The shapes world (generated on first use into ~/.cache/sparc-eval) and the demo suite, no downloads.
DEMO_OUT := results/demo
demo: $(STAMP)
	$(BIN)/sparc-eval run --suite demo --model open_clip:ViT-Tiny-8-64 --model-name random-tiny-clip -o $(DEMO_OUT)
	$(BIN)/sparc-eval run --suite demo --model py:sparc_eval.models.oracle:shapes_oracle --model-name oracle \
		-o $(DEMO_OUT)
	@echo "Demo done: results in $(DEMO_OUT)/. Rows: a randomly initialised tiny CLIP (chance level) and the"
	@echo "ground-truth oracle (the ceiling). Trained SPARC and CLIP checkpoints are not bundled yet."

# Debian's chromium for the leaderboard's browser test (never a browser download).
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: $(STAMP_ALL) system-deps
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check sparc_eval tests bench tools

clean:
	rm -rf $(VENV) build *.egg-info
