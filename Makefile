# Everything a fresh machine needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-edge test test-domain test-contract test-e2e lint bench clean

venv: $(STAMP)

# torch==2.13.0 first: pip takes the CPU build from this machine's disk; any other torch
# request would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/kalshiflow-rl demo

# The demo on markets with a planted, learnable signal: shows the agent learning (~1 min).
demo-edge: venv
	$(BIN)/kalshiflow-rl demo --planted-edge

lint: venv
	$(BIN)/lint-imports

test: venv lint
	$(BIN)/pytest -q

test-domain: venv
	$(BIN)/pytest -q tests/domain

test-contract: venv
	$(BIN)/pytest -q tests/contract

test-e2e: venv
	$(BIN)/pytest -q tests/e2e

bench: venv
	@for b in benchmarks/*.py; do echo "# $$b" >&2; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
