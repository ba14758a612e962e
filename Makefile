# The two commands of the quick start: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint unit install clean

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python -m opus.local.demo

lint: $(INSTALLED)
	$(BIN)/ruff check opus tests bench
	$(BIN)/mypy opus

test: lint
	$(BIN)/pytest -p no:cacheprovider

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit -q

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache
