# The two commands: `make demo` and `make test`. Both do all set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOME_DEMO ?= .demo-home
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DS_ACCELERATOR := cpu

.PHONY: setup demo test test-unit test-integration test-gpu test-slow bench clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel: anything that pulls torch later must not resolve a CUDA build.
$(STAMP): pyproject.toml infra/setup-system.sh
	bash infra/setup-system.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The demo runs against the long-lived local Prefect API (UI at http://127.0.0.1:4200 while it runs); it is
# stopped at the end unless it was already running.
demo: setup
	@if $(BIN)/thyme server status >/dev/null 2>&1; then $(BIN)/thyme demo --home $(HOME_DEMO); \
	else $(BIN)/thyme server start && { $(BIN)/thyme demo --home $(HOME_DEMO); rc=$$?; \
	$(BIN)/thyme server stop; exit $$rc; }; fi

# Tiers run one after another; pytest's exit code 5 ("no tests collected") is reported and fails the run,
# so an empty tier is never mistaken for a pass. The integration tier runs on 2 pytest-xdist workers, a module
# each at a time (its tests mostly wait on servers, so two use the 2 cores; longest modules first: tests/conftest.py).
test: setup test-unit test-integration

test-unit: setup
	bash tests/run_tier.sh unit "not integration and not gpu"

test-integration: setup
	bash tests/run_tier.sh integration "integration and not slow" -n 2 --dist loadfile

test-gpu: setup
	bash tests/run_tier.sh gpu "gpu"

test-slow: setup
	bash tests/run_tier.sh slow "slow"

clean:
	rm -rf $(VENV) $(HOME_DEMO) $(HOME_DEMO)-store
