# Two commands: `make demo` (install, start the local mesh, run the Bookinfo demo) and `make test`.
# Python packages go into .venv with uv (installed from PyPI into the venv; pip is the fallback).
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STEP = scripts/step
# uv when it could be installed, pip otherwise.
PIP_INSTALL = $(shell [ -x $(BIN)/uv ] && echo "$(BIN)/uv pip install -q --python $(BIN)/python" \
                       || echo "$(BIN)/pip install -q")

.PHONY: demo test install install-test lint console-libs native

# The venv is made without pip (ensurepip is most of `python -m venv`'s time) and uv is put in it by the outer
# interpreter's pip (`pip --python`, pip >= 22.3); where that fails, the venv gets its own pip (the fallback).
$(BIN)/python:
	@$(STEP) "virtual environment ($(VENV), uv)" sh -c '$(PY) -m venv --without-pip $(VENV) && \
	  { $(PY) -m pip --python $(BIN)/python install -q uv 2>/dev/null || \
	    { $(BIN)/python -m ensurepip --default-pip >/dev/null && { $(BIN)/pip install -q uv || true; }; }; }'

console-libs:
	@if [ -f package-lock.json ] && command -v npm >/dev/null; then \
	  if [ node_modules/.package-lock.json -nt package-lock.json ]; then echo "  ✓ console libraries (up to date)" >&2; \
	  else $(STEP) "console libraries (npm ci)" npm ci --no-audit --no-fund; fi; \
	else echo "  ! npm not found: the console will serve no JavaScript (install Node.js, then make install)" >&2; fi

install: $(BIN)/python console-libs
	@$(STEP) "python packages" $(PIP_INSTALL) -e '.[native]'
	@$(MAKE) -s native

install-test: $(BIN)/python console-libs
	@$(STEP) "python packages (with test tools)" $(PIP_INSTALL) -e '.[test,native]'
	@$(MAKE) -s native

# The data plane's hot modules compiled with mypyc (graylane.mesh.native), rebuilt only when a source changed;
# without a C compiler the proxy runs as Python (the same code) and says so.
native:
	@$(STEP) "compiled data plane (mypyc)" $(BIN)/python -m graylane.mesh.native build --if-stale

demo: install
	@$(BIN)/graylane demo bookinfo

# The pipeline engine's core, type-checked strictly with the mesh snapshot and routing (docs/architecture.md).
PIPELINES_CORE = $(addprefix src/graylane/pipelines/,executor.py scheduling.py commands.py tx.py driver.py \
                   status.py services.py tasks.py execution.py waiting.py children.py concurrency.py window.py \
                   model.py service.py)

# System parts (PostgreSQL, Prometheus, Chromium, git) are installed and started by scripts/test-system.
# The proxy tests (tests/mesh/proxy, and the delta pushes of tests/mesh/test_push_delta.py) run twice: in-process
# proxy with the compiled hot path (graylane.mesh.native), then a `--concurrency 2` proxy process running the same
# modules as Python (GRAYLANE_TEST_PROXY_WORKERS=2 GRAYLANE_NATIVE=0; docs/dataplane.md, Workers, Compiled).
test: install-test
	@env_lines=$$(scripts/test-system) && eval "$$env_lines" && \
	  $(STEP) "ruff" $(BIN)/ruff check src tests && \
	  $(STEP) "mypy" $(BIN)/mypy --strict src/graylane/mesh/snapshot.py src/graylane/mesh/routing \
	    $(PIPELINES_CORE) && \
	  $(STEP) "import layers" $(BIN)/lint-imports && \
	  $(BIN)/pytest && \
	  $(STEP) "data-plane tests again, proxy as 2 worker processes, as Python" \
	    env GRAYLANE_TEST_PROXY_WORKERS=2 GRAYLANE_NATIVE=0 $(BIN)/pytest -q -p no:cacheprovider tests/mesh/proxy \
	      tests/mesh/test_push_delta.py

lint:
	$(BIN)/ruff check src tests
