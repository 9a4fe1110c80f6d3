# tradepulse — developer commands. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo test test-fast test-deploy lint bench bench-worker bench-persister bench-memory bench-api services clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml $(wildcard src/tradepulse/*/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the dashboard's chart library (apt-get install npm)"; exit 1; }
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)  ## create .venv (package + dev dependencies) and node_modules (dashboard)

demo: install  ## the whole system in one process: dashboard on http://127.0.0.1:8000
	$(BIN)/tradepulse demo

services:  ## make sure Redis, PostgreSQL and a Kafka-protocol broker can be reached
	bash scripts/ensure-services.sh

test: install services  ## the whole test suite
	$(BIN)/pytest

test-fast: install  ## unit and property tests only (no services)
	$(BIN)/pytest tests/unit tests/property

test-deploy: install services  ## deployment kit: image, compose, k8s, rules, dashboards, CI
	$(BIN)/pytest tests/deploy

lint: install  ## ruff + mypy --strict on src/
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src
	$(BIN)/mypy

bench: install  ## benchmarks; JSON results in bench/results/
	$(BIN)/python bench/run.py
	$(BIN)/python bench/bars.py
	$(BIN)/python bench/scan.py

bench-worker: install services  ## worker throughput through a real broker and Redis
	$(BIN)/python bench/worker.py

bench-persister: install services  ## bar persister rows/s from a Redis stream into PostgreSQL
	$(BIN)/python bench/persister.py

bench-memory: install services  ## worker RSS per 1,000 tokens, Redis bytes per retained trade
	$(BIN)/python bench/memory.py

bench-api: install services  ## REST latency and WebSocket alert fan-out of a real api process
	$(BIN)/python bench/api.py

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
