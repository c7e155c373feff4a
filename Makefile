# recsys_lab — common commands. `make help` lists them.
PY      ?= .venv/bin/python
PIP     ?= .venv/bin/pip
PYTEST  ?= $(PY) -m pytest
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help
.PHONY: help install train test test-full lint format smoke bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: ## create .venv and install recsys_lab with every extra at pinned versions
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet -e ".[all]"
	# TorchRec's declared dependencies pull CUDA wheels and downgrade torchmetrics: install it bare.
	$(PIP) install --quiet --no-deps torchrec==1.8.0
	# Flower's declared pins clash with rich 15 and SQLAlchemy 1.4: install it bare (deps: the `federated` extra).
	$(PIP) install --quiet --no-deps flwr==1.42.0
	$(PY) -c "import torch, lightning, hydra; print('torch', torch.__version__, '| lightning', lightning.__version__)"

train: ## default run: DCNv2 on the built-in synthetic dataset (CPU, about a minute)
	$(PY) -m recsys_lab.train

test: ## the test suite (slow tests excluded)
	$(PYTEST) -q -m "not slow"

test-full: ## the whole test suite, slow tests included
	$(PYTEST) -q

lint: ## ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

smoke: ## every experiment config under fast_dev_run
	$(PY) scripts/smoke.py

bench: ## training throughput and roofline table
	$(PY) scripts/bench_train.py

clean: ## remove run outputs and caches
	rm -rf runs outputs multirun .pytest_cache .ruff_cache
