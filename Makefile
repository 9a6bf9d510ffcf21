# machinetwin developer commands. `make demo` and `make test` are all a new user needs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the project metadata changes; the stamp lives inside the venv,
# so deleting .venv also forces a fresh install.
INSTALL_STAMP := $(VENV)/.install.stamp
PYTEST_ARGS ?=
ARGS ?=
ARTIFACTS := artifacts
LINT_PATHS := $(wildcard src tests benchmarks)
BENCHMARKS := $(wildcard benchmarks/*.py)

.PHONY: help install system-deps test demo report bench lint clean

help:
	@echo "make demo         create .venv, install machinetwin and run the demo"
	@echo "make report       simulate one machine on the example program and write a report"
	@echo "make test         install (LinuxCNC too when root) and run all tests; PYTEST_ARGS=... passes options"
	@echo "make bench        run every benchmark in quick mode"
	@echo "make lint         ruff check and format check"
	@echo "make system-deps  install LinuxCNC's rs274, Mosquitto and Chromium (needs root and apt-get)"
	@echo "make clean        remove .venv, caches and artifacts"

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-deps:
	bash scripts/install-system-deps.sh

test: install system-deps
	$(BIN)/pytest -q --durations=20 $(PYTEST_ARGS)

# The main job: a hub and three virtual machine tools on emulated long-distance links.
# ARGS="--with-linuxcnc --with-replay" adds a real LinuxCNC and a replayed recorded mill.
demo: install
	$(BIN)/machinetwin demo --data-dir .demo --port 8080 $(ARGS)

# One virtual machine on the example program, with telemetry and an HTML report.
report: install
	@mkdir -p $(ARTIFACTS)
	$(BIN)/machinetwin gcode stats -t examples/tools.tbl examples/pocket.ngc
	$(BIN)/machinetwin sim run examples/pocket.ngc --seed 1 --fault bearing_outer:0.6@0 \
		--out $(ARTIFACTS)/pocket.parquet
	$(BIN)/machinetwin sim report $(ARTIFACTS)/pocket.parquet --out $(ARTIFACTS)/pocket.html
	@echo "Report: $(ARTIFACTS)/pocket.html (plots, vibration envelope spectrum, finished part)"

bench: install
	@if [[ -z "$(BENCHMARKS)" ]]; then echo "bench: no benchmarks/*.py yet"; fi
	@for b in $(BENCHMARKS); do echo "== $$b"; $(BIN)/python "$$b" --quick; done

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis $(ARTIFACTS) .demo
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
