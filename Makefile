# fader-lightning: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONSTRAINTS := requirements/constraints.txt

.DEFAULT_GOAL := help
.PHONY: help install lock test lint format demo reproduce-table eval bench bench-speed bench-calibration clean bench-peers

DATASET ?= demo
DATA_DIR ?=
CATEGORIES ?=
MASKING ?=
EXTRA ?=
ifndef SWEEP_DIR
SWEEP_DIR := logs/table_$(DATASET)/sweep-$(shell date +%Y%m%d-%H%M%S)
endif
DATA_ROOT_ARG := $(if $(DATA_DIR),data.root=$(abspath $(DATA_DIR)),)
CATEGORY_ARG := $(if $(CATEGORIES),'data.category=$(CATEGORIES)',)
MASKING_ARG := $(if $(MASKING),masking=$(MASKING),)

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the package (editable, with dev tools); no-op when up to date

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

lock: ## Re-resolve the newest allowed versions in a scratch venv and pin them in requirements/constraints.txt
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet '.[dev,deploy]'
	{ echo "# Exact versions that 'make install' resolves to (pip install -c). Refresh with 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v -e '^fader-lightning' -e '^pip=='; } > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS) && rm -rf .lock-venv

test: install ## Run the test suite
	$(PY) -m pytest

lint: install ## ruff check and format check, and the import contracts of .importlinter (docs/ARCHITECTURE.md)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

demo: install ## The main job on the embedded generated data: the demo table, end to end
	$(MAKE) --no-print-directory reproduce-table DATASET=demo

reproduce-table: install ## Sweep, then aggregate: DATASET=mvtec|visa|mvtec_ad2|realiad|unified_mvtec|demo [DATA_DIR=..] [CATEGORIES=a,b] [MASKING=x,y]
	$(PY) -m fader_lightning.cli.train experiment=table_$(DATASET) hydra.sweep.dir=$(SWEEP_DIR) \
		$(DATA_ROOT_ARG) $(CATEGORY_ARG) $(MASKING_ARG) $(EXTRA)
	$(PY) -m fader_lightning.cli.aggregate $(SWEEP_DIR) --name $(DATASET) --operating-point

CKPT ?=
EVAL_DATA_ARG := $(if $(filter-out demo,$(DATASET)),data=$(DATASET),)

eval: install ## Test a checkpoint on its run's data, or another: CKPT=<run>/checkpoints/<stage>/last.ckpt [DATASET=mvtec|visa DATA_DIR=.. CATEGORIES=x] [EXTRA=..]
	@test -n "$(CKPT)" || { echo "make eval needs CKPT=<run>/checkpoints/<ear|fader>/last.ckpt"; exit 2; }
	$(PY) -m fader_lightning.cli.evaluate ckpt_path=$(abspath $(CKPT)) $(EVAL_DATA_ARG) $(DATA_ROOT_ARG) $(CATEGORY_ARG) $(EXTRA)

bench: install ## Measure costs, latencies, throughput and memory: results/bench.json and results/bench.md
	$(PY) benchmarks/bench.py --out results

bench-speed: install ## Test-pass breakdown, U-Net speed switches, scaling 64-512 px: results/speed.{json,md}, scaling.png
	$(PY) benchmarks/bench_speed.py --out results

RUNS ?=

bench-calibration: install ## Calibration methods on trained stage-1 runs: RUNS="<run or multirun folder> ..." -> results/calibration/
	@test -n "$(RUNS)" || { echo "make bench-calibration needs RUNS=<fader-train run or multirun folders>"; exit 2; }
	$(PY) benchmarks/calibration_table.py --runs $(RUNS) --out results/calibration

clean: ## Remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache outputs multirun logs .lock-venv

PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
PEERS_REQUIREMENTS := requirements/peers.txt
CATEGORY ?=
IMAGE_SIZE ?=
PEERS_ARGS := $(if $(DATA_DIR),--root $(abspath $(DATA_DIR)),) $(if $(CATEGORY),--category $(CATEGORY),) \
	$(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE),)

$(PEERS_STAMP): pyproject.toml $(CONSTRAINTS) $(PEERS_REQUIREMENTS)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[deploy]' -r $(PEERS_REQUIREMENTS)
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP) ## anomalib PatchCore/PaDiM/FastFlow/DRAEM vs EAR, EAR + FADeR (own venv): results/peers.{json,md} [DATA_DIR=.. CATEGORY=x IMAGE_SIZE=n] [EXTRA=..]
	$(PEERS_VENV)/bin/python benchmarks/bench_peers.py --out results $(PEERS_ARGS) $(EXTRA)
