# Thawline — the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run serve test lint typecheck unit integration e2e e2e-browser bench bench-postgres bench-notify clean

$(BIN)/thawline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/thawline

install: $(BIN)/thawline ## Create .venv and install Thawline with its development tools

run: install ## Install, load demo data into an empty ./thawline.db, then serve
	$(BIN)/thawline demo
	THAWLINE_WEBHOOK_ALLOW_PRIVATE_URLS=true $(BIN)/thawline serve --host $(HOST) --port $(PORT)

serve: run

lint: install ## ruff (lint + format check) and the import-linter layer contracts
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install ## mypy --strict over the whole package
	$(BIN)/mypy

test: lint typecheck ## Everything CI runs: lint, types, all tests on SQLite and PostgreSQL
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

e2e-browser: install ## Real-browser tests: Playwright driving Debian chromium (apt-get install chromium)
	$(BIN)/pytest tests/browser

bench: install ## Operation-log benchmark on SQLite (one JSON object)
	$(BIN)/python bench/oplog.py

bench-postgres: install
	$(BIN)/python bench/oplog.py --database-url postgresql://postgres@127.0.0.1:5432/test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist src/*.egg-info

bench-notify: install ## Notifications: webhook deliveries/s and SSE latency (one JSON object; --quick: under a minute)
	$(BIN)/python bench/notify.py
