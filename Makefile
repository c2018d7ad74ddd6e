# Two commands work on a fresh machine with Python 3.11+ and make:
#   make demo   the server with its demo chat on the in-memory broker, http://127.0.0.1:8000
#   make test   lint, type-check and the whole test suite
#   make soak   the security probes with the long fuzzing budget (about 30 minutes)
#   make autobahn   the Autobahn|Testsuite fuzzing client against a uvicorn process (needs Python 2.7)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed
BENCH_JS_STAMP := bench/node_modules/.installed

AUTOBAHN := .venv-autobahn
AUTOBAHN_STAMP := $(AUTOBAHN)/.installed
PYTHON27 ?= /root/.pyenv/versions/2.7.18/bin/python
AUTOBAHN_TIMEOUT ?= 900

.PHONY: demo test lint typecheck pytest soak bench bench-delivery bench-redis clean proto autobahn

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

bench-delivery: $(STAMP) $(BENCH_JS_STAMP)
	$(BIN)/python bench/delivery.py

bench-redis: $(STAMP) $(BENCH_JS_STAMP)
	$(BIN)/python bench/redis_fanout.py

PROTO_DIR := src/fastapi_realtime/protocol/proto

# Regenerate the Protobuf module (committed) from client.proto with protoc from grpcio-tools. The path
# under src/ is the file's name in protobuf's descriptor pool, distinct from the SDKs' "client.proto".
proto: $(STAMP)
	$(BIN)/pip install -q "grpcio-tools>=1.85.1"
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src $(PROTO_DIR)/client.proto

# autobahntestsuite runs on Python 2.7 only; virtualenv 20.21 is the last that creates 2.7 venvs.
$(AUTOBAHN_STAMP):
	$(PYTHON) -m venv $(AUTOBAHN)/bootstrap
	$(AUTOBAHN)/bootstrap/bin/pip install -q "virtualenv==20.21.1"
	$(AUTOBAHN)/bootstrap/bin/virtualenv -q -p $(PYTHON27) $(AUTOBAHN)/py27
	$(AUTOBAHN)/py27/bin/pip install -q autobahntestsuite
	touch $(AUTOBAHN_STAMP)

# Bounded: the runner stops the fuzzing client after AUTOBAHN_TIMEOUT seconds, `timeout` backs it up.
autobahn: $(STAMP) $(AUTOBAHN_STAMP)
	timeout $$(( $(AUTOBAHN_TIMEOUT) + 60 )) $(BIN)/python tests/autobahn/run.py --timeout $(AUTOBAHN_TIMEOUT)

clean:
	rm -rf $(VENV) $(AUTOBAHN) tests/js/node_modules bench/node_modules .pytest_cache .mypy_cache .ruff_cache
