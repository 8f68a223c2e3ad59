# camfleet: `make demo` runs it, `make test` proves it. Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STRICT := $(if $(CI),--strict,)

.PHONY: demo test lint unit sysdeps venv bench clean

# The virtualenv is refreshed whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python scripts/fetch-pose-backbone.py
	touch $@

venv: $(VENV)/.installed

sysdeps:
	bash scripts/install-system-deps.sh $(STRICT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest $(PYTEST_ARGS)

test: sysdeps lint unit

demo: sysdeps venv
	$(BIN)/camfleet demo $(DEMO_ARGS)

bench: sysdeps venv
	$(BIN)/python -m benchmarks.sim_serving
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.controller
	$(BIN)/python -m benchmarks.detect

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
