# The two commands of the README:
#   make run    runs the gateway (embedded default config unless ARGS="--config FILE")
#   make test   runs the whole test suite (lint, types, unit, integration
#               against real peers, which it installs: tests/peers/install.sh),
#               then the unit suite again on the oldest declared releases
# Both create .venv and install everything they need on first use.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

FLOORS := .venv-floors
FLOORS_STAMP := $(FLOORS)/.installed

.PHONY: run test lint peers floors bench compare clean

$(STAMP): setup.cfg pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools>=69' wheel
	$(BIN)/pip install -q -e '.[test]'
	# twistd finds plugins by scanning sys.path for twisted/plugins/; an
	# editable install's import hook does not put the checkout there, so a
	# .pth file does (not setuptools' "compat" mode, announced for removal).
	@echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/tunnelgw-checkout.pth"
	touch $@

run: $(STAMP)
	$(BIN)/twistd -n --pidfile= tunnelgw $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check tunnelgw tests bench twisted examples
	$(BIN)/ruff format --check tunnelgw tests bench twisted examples
	$(BIN)/mypy

# the real servers and clients of the integration tests (apt, npm)
peers:
	bash tests/peers/install.sh

test: lint peers
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) floors

# The unit suite on the oldest releases setup.cfg declares (tests/floors.txt),
# in a venv of its own; the full suite above runs on the latest.
$(FLOORS_STAMP): setup.cfg pyproject.toml tests/floors.txt Makefile
	$(PY) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install -q --upgrade pip 'setuptools>=69' wheel
	$(FLOORS)/bin/pip install -q -c tests/floors.txt -e '.[test]'
	@echo "$(CURDIR)" > "$$($(FLOORS)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/tunnelgw-checkout.pth"
	touch $@

floors: $(FLOORS_STAMP)
	$(FLOORS)/bin/python -m pytest tests/unit -p no:cacheprovider

# every figure of docs/benchmarks.md but the comparisons (make compare):
# ARGS go to bench/run.py; --write-docs to each
bench: $(STAMP)
	bash bench/setup.sh
	$(BIN)/python bench/run.py $(ARGS)
	$(BIN)/python bench/users.py $(filter --write-docs,$(ARGS))
	$(BIN)/python bench/adapters.py $(filter --write-docs,$(ARGS))

# tunnelgw against tunnelgw: ARGS='--ablation' (each shortcut of
# tunnelgw._compat against its public fallback) or ARGS='--ref REF'
compare: $(STAMP)
	bash bench/setup.sh
	$(BIN)/python bench/compare.py $(ARGS)

clean:
	rm -rf $(VENV) $(FLOORS) build dist *.egg-info
