# crmhub: the two commands of the README, plus `make check`.
#   make demo    set up and run the main job on the embedded default (SQLite + sandboxes)
#   make test    set up and run every test
#   make check   lint (ruff), types (mypy), then every test

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint types setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/crmhub demo

# three workers sharing out the tests: most of them wait on sockets and child processes
test: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
