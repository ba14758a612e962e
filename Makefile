# The two commands of the quick start: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed

.PHONY: demo test lint unit install clean

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,azure]'
	@touch $@

# npm packages: Azurite (Blob Storage for the tests) and the dashboard's chart library.
$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(INSTALLED) $(NODE_INSTALLED)

demo: install
	$(BIN)/python -m opus.local.demo

lint: install
	$(BIN)/ruff check opus tests bench
	$(BIN)/mypy opus

test: lint
	$(BIN)/pytest -p no:cacheprovider

unit: install
	$(BIN)/pytest tests/unit -q

clean:
	rm -rf $(VENV) node_modules .state .mypy_cache .ruff_cache .pytest_cache
