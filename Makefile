# Two commands work on a fresh machine with Python 3.11+ and make:
#   make demo   the server with its demo chat on the in-memory broker, http://127.0.0.1:8000
#   make test   lint, type-check and the whole test suite
#   make soak   the security probes with the long fuzzing budget (about 30 minutes)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed
BENCH_JS_STAMP := bench/node_modules/.installed

.PHONY: demo test lint typecheck pytest soak bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
	touch $(JS_STAMP)

HOST ?= 127.0.0.1
PORT ?= 8000

demo: $(STAMP)
	@echo "Demo chat: open http://$(HOST):$(PORT)/ in two browser tabs (or two browsers), pick a nickname in each and chat."
	@echo "Live ticker: http://$(HOST):$(PORT)/ticker. Reload a tab, go offline or restart this server: the page reconnects."
	@echo "Demo only: /demo/token signs a token for any nickname. Ctrl-C stops the server."
	$(BIN)/python -m fastapi_realtime serve -c examples/demo.toml --demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP) $(JS_STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

soak: $(STAMP)
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest -q tests/security --timeout 3600

$(BENCH_JS_STAMP): bench/package.json bench/package-lock.json
	npm ci --prefix bench --no-audit --no-fund
	touch $(BENCH_JS_STAMP)

bench: $(STAMP) $(BENCH_JS_STAMP)
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) tests/js/node_modules bench/node_modules .pytest_cache .mypy_cache .ruff_cache
