# Two commands: `make demo` (install, start the local mesh, run the Bookinfo demo) and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test install install-test lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .
	@[ -f package-lock.json ] && npm ci --silent --no-audit --no-fund || true

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	@[ -f package-lock.json ] && npm ci --silent --no-audit --no-fund || true

demo: install
	$(BIN)/graylane demo bookinfo

test: install-test
	$(BIN)/ruff check src tests
	$(BIN)/pytest

lint:
	$(BIN)/ruff check src tests
