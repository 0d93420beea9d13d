# gdkvm: two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= results/demo

.PHONY: setup demo test lint bench report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pin torch first: the local CPU build; an unpinned torch would pull CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check gdkvm tests baselines scripts

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/gdkvm bench fps --preset tiny --device cpu

report: $(STAMP)
	$(BIN)/gdkvm report --runs results/runs --out results/report

clean:
	rm -rf $(VENV) .pytest_cache
