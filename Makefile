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

# The demo: the bundled SPARC and CLIP checkpoints (trained on the shapes world by tools/checkpoints.py) on
# the demo suite, with two reference rows: the same architecture untrained (chance level) and the
# ground-truth oracle (the ceiling). The shapes world is generated on first use; nothing is downloaded.
DEMO_OUT := results/demo
DEMO_MODELS := shapes-sparc=sparc:checkpoints/shapes-sparc shapes-clip=sparc:checkpoints/shapes-clip \
	untrained=open_clip:ViT-Tiny-8-64 oracle=py:sparc_eval.models.oracle:shapes_oracle
demo: $(STAMP)
	@for m in $(DEMO_MODELS); do \
		$(BIN)/sparc-eval run --suite demo --model $${m#*=} --model-name $${m%%=*} -o $(DEMO_OUT) || exit 1; \
	done
	$(BIN)/sparc-eval leaderboard $(DEMO_OUT) --suite demo --baseline shapes-clip --title "Demo: SPARC vs CLIP on the shapes world" \
		-o $(DEMO_OUT)/leaderboard.html -o $(DEMO_OUT)/leaderboard.md
	@cat $(DEMO_OUT)/leaderboard.md
	@echo "Leaderboard page: $(DEMO_OUT)/leaderboard.html"

# Debian's chromium for the leaderboard's browser test (never a browser download).
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: $(STAMP_ALL) system-deps
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check sparc_eval tests bench tools

clean:
	rm -rf $(VENV) build *.egg-info
