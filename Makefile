# The two commands of the README:
#   make run    runs the gateway (embedded default config unless ARGS="--config FILE")
#   make test   runs the whole test suite (lint, types, unit, integration)
# Both create .venv and install everything they need on first use.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: run test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools>=69' wheel
	# compat mode puts the checkout on sys.path, so twistd sees twisted/plugins/
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

run: $(STAMP)
	$(BIN)/twistd -n tunnelgw $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check tunnelgw tests bench twisted
	$(BIN)/ruff format --check tunnelgw tests bench twisted
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	bash bench/setup.sh
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
