# pyiii developer commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test setup setup-core setup-compat setup-services setup-browser lint bench clean

## run: install pyiii into .venv and run the live todo app: the engine on its defaults (data in ./data)
## with examples/todo/app.py in the same process; open http://127.0.0.1:3111/
run: setup-core
	$(BIN)/pyiii run examples/todo/app.py

## test: install everything (venv, official Python and Node SDKs, a running Redis) and run lint, types and all tests
test: setup lint
	$(BIN)/pytest

setup: setup-core setup-compat setup-services setup-browser

## setup-services: the Redis server the Redis adapter tests use (127.0.0.1:6379 or $$REDIS_URL), and the
## default worker port 49134 kept out of Linux's ephemeral port range (when root) for the default-port tests
setup-services:
	scripts/ensure-redis
	scripts/reserve-default-port

## setup-browser: Debian's chromium at /usr/bin/chromium for the browser tests (Playwright drives it)
setup-browser:
	scripts/ensure-chromium

setup-core: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,redis]'
	touch $@

setup-compat: setup-core
	scripts/setup-compat
	scripts/setup-sdk-suites

lint: setup-core
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: the invoke benchmark (ratios against a relay baseline measured in the same run)
bench: setup
	$(BIN)/python bench/invoke.py

clean:
	rm -rf $(VENV) .compat tests/compat/node/*/node_modules examples/todo-node/node_modules .pytest_cache .mypy_cache .ruff_cache
