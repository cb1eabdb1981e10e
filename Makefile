# InsightMesh developer commands. Everything runs from a project-local virtualenv (.venv) that
# `make` creates on first use from any Python 3.11+ (override with PYTHON=python3.12).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT   ?= 3000
EMULATOR_PORT ?= 4566
# pytest-xdist workers for `make test` (each test file is one unit of work, the e2e modules one
# between them: see tests/conftest.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: install dev test test-unit test-integration test-e2e test-browser chromium-check lint typecheck bench chaos validate build deploy clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## Run the whole stack locally: API on http://127.0.0.1:$(PORT), AWS emulator on $(EMULATOR_PORT).
dev: $(STAMP)
	$(BIN)/insightmesh dev --port $(PORT) --emulator-port $(EMULATOR_PORT)

## Lint, type-check and run the unit, integration, e2e and browser tiers.
test: $(STAMP) lint typecheck chromium-check
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 tests/unit tests/integration tests/e2e tests/browser

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile tests/integration

test-e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

## The console in Debian's Chromium (Playwright for Python; never Playwright's browser download).
test-browser: $(STAMP) chromium-check
	$(BIN)/pytest -q tests/browser

chromium-check:
	@test -x /usr/bin/chromium || echo "make test: no Chromium at /usr/bin/chromium, so the browser tests are skipped (apt-get install chromium)"

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Performance figures (printed, never asserted).
bench: $(STAMP)
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/local_runtime.py
	$(BIN)/python benchmarks/slack_ingress.py
	$(BIN)/python benchmarks/request_path.py
	$(BIN)/python benchmarks/admin_api.py
	$(BIN)/python benchmarks/console_pages.py
	$(BIN)/python benchmarks/directory_sync.py
	$(BIN)/python benchmarks/user_sync.py
	$(BIN)/python benchmarks/retrieval.py
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/research_profile.py

## Load and faults against `insightmesh dev` (benchmarks/chaos.py): prints figures, ≤ 10 min; not in `make test`.
chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py

## SAM: needs the AWS SAM CLI installed separately (pipx install aws-sam-cli); not in the venv.
validate:
	sam validate --lint --template infra/template.yaml

build:
	sam build --template infra/template.yaml

deploy: build
	sam deploy

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache .mypy_cache
