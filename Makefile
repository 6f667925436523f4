# Thawline — the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install accel run serve test lint typecheck unit integration e2e e2e-browser bench bench-postgres bench-notify clean

$(BIN)/thawline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/thawline

# The risk engine's feature update compiled with Cython (tools/build_accel.py); optional: without a
# C compiler the plain module runs (slower). CI sets THAWLINE_REQUIRE_ACCEL=1 so a failed build fails.
ACCEL := src/thawline/domain/.accel-built
$(ACCEL): $(BIN)/thawline src/thawline/domain/features.py src/thawline/domain/features.pxd tools/build_accel.py
	$(BIN)/python tools/build_accel.py || echo "warning: the compiled features module was not built; the plain one runs"
	touch $(ACCEL)

install: $(BIN)/thawline $(ACCEL) ## Create .venv and install Thawline with its development tools (+ the compiled engine module)

accel: $(BIN)/thawline ## Rebuild the compiled features module now
	$(BIN)/python tools/build_accel.py

run: install ## Install, load demo data into an empty ./thawline.db, then serve
	$(BIN)/thawline demo
	THAWLINE_WEBHOOK_ALLOW_PRIVATE_URLS=true $(BIN)/thawline serve --host $(HOST) --port $(PORT)

serve: run

lint: install ## ruff (lint + format check) and the import-linter layer contracts
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
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
