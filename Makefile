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

# The demo: the bundled checkpoints (trained on the shapes world by tools/checkpoints.py, DEMO_SEEDS training seeds
# per method: seed groups shapes-sparc and shapes-clip) on the demo suite, with two more rows: the `untrained`
# control (the bundled architecture with random weights, role control: it should sit at chance) and the
# ground-truth oracle (role reference: the ceiling). The leaderboard's deltas and seed table are to the CLIP group;
# compare.md holds SPARC vs CLIP over seeds. 2 seeds per method: a third would push `make demo` past 3 minutes.
# The bundled checkpoints run in one call (one process start); each card's method is its seed group.
# The shapes world is generated on first use; nothing is downloaded.
DEMO_OUT := results/demo
DEMO_SEEDS := 0 1
DEMO_METHODS := sparc clip
DEMO_CHECKPOINTS := $(foreach m,$(DEMO_METHODS),$(foreach s,$(DEMO_SEEDS),shapes-$(m)-seed$(s)))
DEMO_RUN = $(BIN)/sparc-eval run --suite demo -o $(DEMO_OUT)
demo: $(STAMP)
	$(DEMO_RUN) --role model $(foreach c,$(DEMO_CHECKPOINTS),--model sparc:checkpoints/$(c) --model-name $(c))
	$(DEMO_RUN) --model py:sparc_eval.models.controls:untrained --pretrained checkpoints/shapes-sparc-seed0 \
		--model-name untrained --role control
	$(DEMO_RUN) --model py:sparc_eval.models.oracle:shapes_oracle --model-name oracle --role reference
	$(BIN)/sparc-eval leaderboard $(DEMO_OUT) --suite demo --baseline shapes-clip --title "Demo: SPARC vs CLIP on the shapes world" \
		-o $(DEMO_OUT)/leaderboard.html -o $(DEMO_OUT)/leaderboard.md
	$(BIN)/sparc-eval compare $(DEMO_OUT) --a shapes-clip --b shapes-sparc --markdown $(DEMO_OUT)/compare.md \
		--json $(DEMO_OUT)/compare.json
	@cat $(DEMO_OUT)/leaderboard.md
	@echo "Leaderboard page: $(DEMO_OUT)/leaderboard.html; SPARC vs CLIP over seeds: $(DEMO_OUT)/compare.md"

# Debian's chromium for the leaderboard's browser test (never a browser download).
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: $(STAMP_ALL) system-deps
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check sparc_eval tests bench tools

clean:
	rm -rf $(VENV) build *.egg-info
