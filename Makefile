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
ARTIFACTS := artifacts
LINT_PATHS := $(wildcard src tests benchmarks)
BENCHMARKS := $(wildcard benchmarks/*.py)

.PHONY: help install system-deps test demo bench lint clean

help:
	@echo "make demo         create .venv, install machinetwin and run the demo"
	@echo "make test         install (LinuxCNC too when root) and run all tests; PYTEST_ARGS=... passes options"
	@echo "make bench        run every benchmark in quick mode"
	@echo "make lint         ruff check and format check"
	@echo "make system-deps  install LinuxCNC's rs274 (needs root and apt-get)"
	@echo "make clean        remove .venv, caches and artifacts"

install: $(INSTALL_STAMP)

$(INSTALL_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-deps:
	bash scripts/install-system-deps.sh

test: install system-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Until the hub and web UI exist, the demo runs one virtual machine on the example program.
demo: install
	@mkdir -p $(ARTIFACTS)
	$(BIN)/machinetwin gcode stats -t examples/tools.tbl examples/pocket.ngc
	$(BIN)/machinetwin sim run examples/pocket.ngc --seed 1 --fault bearing_outer:0.6@0 \
		--out $(ARTIFACTS)/pocket.parquet
	$(BIN)/machinetwin sim report $(ARTIFACTS)/pocket.parquet --out $(ARTIFACTS)/pocket.html
	@echo
	@echo "Demo: the virtual machining centre (design.md's default VMC) ran examples/pocket.ngc"
	@echo "(a pocket and four drilled holes in the 100 x 80 x 40 mm aluminium block) with a"
	@echo "seeded outer-race defect in its spindle bearing. Telemetry: $(ARTIFACTS)/pocket.parquet;"
	@echo "open $(ARTIFACTS)/pocket.html for the plots, the vibration spectrum and the finished part."
	@echo "(The hub, three sites on emulated links and the web UI come with the next issues.)"

bench: install
	@if [[ -z "$(BENCHMARKS)" ]]; then echo "bench: no benchmarks/*.py yet"; fi
	@for b in $(BENCHMARKS); do echo "== $$b"; $(BIN)/python "$$b" --quick; done

lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis $(ARTIFACTS)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
