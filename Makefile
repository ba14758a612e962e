# The two commands of the quick start: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed
# checkov pins older versions of packages the project uses (packaging, python-dateutil): own virtual environment.
TOOLS_VENV ?= .venv-tools
TOOLS_INSTALLED := $(TOOLS_VENV)/.installed
CHECKOV_SPEC := checkov>=3.2,<4

.PHONY: demo test lint unit install chromium wrk clean deploy-check bench

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,azure]'
	@touch $@

# npm packages: Azurite (Blob Storage for the tests) and the dashboard's chart library.
$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The dashboard's chart library, copied beside the pages (git-ignored) so that they need no build step.
VENDOR := static_dashboard/vendor
UPLOT := node_modules/uplot
$(VENDOR)/uPlot.iife.min.js: $(NODE_INSTALLED)
	mkdir -p $(VENDOR)
	cp $(UPLOT)/dist/uPlot.iife.min.js $(UPLOT)/dist/uPlot.min.css $(UPLOT)/LICENSE $(VENDOR)/

$(TOOLS_INSTALLED): Makefile
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet '$(CHECKOV_SPEC)'
	@touch $@

install: $(INSTALLED) $(NODE_INSTALLED) $(VENDOR)/uPlot.iife.min.js

# The browser tests drive Debian's Chromium (never a downloaded browser build).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# The API benchmark's HTTP load generator (bench/api_search.py), Debian's wrk, as the browser tests take Chromium.
wrk:
	@test -x /usr/bin/wrk || (apt-get update && apt-get install -y wrk)

demo: install
	$(BIN)/python -m opus.local.demo

lint: install
	$(BIN)/ruff check opus tests bench
	$(BIN)/mypy opus bench

# Bicep parses, checkov passes offline (accepted findings in docs/deploy.md), parameter files, app settings and
# workflows agree: tests/deploy.
deploy-check: install $(TOOLS_INSTALLED)
	BC_SKIP_MAPPING=TRUE OPUS_CHECKOV=$(TOOLS_VENV)/bin/checkov $(BIN)/pytest tests/deploy -q -p no:cacheprovider

# The whole suite, tests/deploy (what deploy-check runs) included, in TEST_WORKERS processes (pytest-xdist): each
# has a database of its own, and most tests wait on processes, sockets and timers more than they compute.
TEST_WORKERS ?= 3
test: lint $(TOOLS_INSTALLED) chromium
	BC_SKIP_MAPPING=TRUE OPUS_CHECKOV=$(TOOLS_VENV)/bin/checkov $(BIN)/pytest -p no:cacheprovider \
		-n $(TEST_WORKERS) --durations=25

# Every benchmark of bench/ at full scale (about 10 minutes); writes bench/RESULTS.md. Not part of `test`, which
# runs each one at a tiny scale instead (tests/integration/test_bench_smoke.py).
bench: install wrk
	$(BIN)/python -m bench.run_all

unit: install
	$(BIN)/pytest tests/unit -q

clean:
	rm -rf $(VENV) $(TOOLS_VENV) node_modules .state .mypy_cache .ruff_cache .pytest_cache
