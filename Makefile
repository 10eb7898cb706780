# gex-alertd: `make run` (demo on the embedded simulator) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint format deps system-deps clean soak

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || bash scripts/make-venv.sh "$(PYTHON)" $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

deps: $(STAMP)

# redis-server, and for the tests systemd-analyze, chromium and prometheus-alertmanager,
# installed with apt-get when missing
system-deps:
	@bash scripts/ensure-system-deps.sh

run: deps
	@bash scripts/ensure-system-deps.sh run
	@bash scripts/run-demo.sh

test: deps system-deps
	$(BIN)/python -m pytest -q --durations=15 -n 2 --dist loadgroup

bench: deps system-deps
	$(BIN)/python -m bench.run_all

soak: deps system-deps
	GEX_SOAK=1 $(BIN)/python -m pytest -q tests/reliability

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .run build *.egg-info .pytest_cache .ruff_cache .mypy_cache
