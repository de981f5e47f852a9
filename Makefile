# Every target bootstraps .venv itself, so a fresh clone needs only `make demo` / `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve cluster test test-all lint bench fixtures clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/exq --store demo-store demo

serve: $(STAMP)
	$(BIN)/exq --store demo-store serve

# SeaweedFS, Redis, two workers and a viewer on loopback (Ctrl-C stops them)
cluster: $(STAMP)
	$(BIN)/exq dev-cluster --dir exq-cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

test-all: lint
	$(BIN)/python -m pytest -q -m ""

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

fixtures: $(STAMP)
	$(BIN)/python fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) demo-store exq-cluster .pytest_cache tests/artifacts
