# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DB ?= sqlite:///var/adapter.db

.PHONY: install run test lint bench definitions clean

$(BIN)/fhir-adapter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/fhir-adapter

run: install
	$(BIN)/fhir-adapter demo --db $(DB)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check adapter tests bench tools fixtures
	$(BIN)/mypy adapter

bench: install
	$(BIN)/python -m bench.read

# Regenerate adapter/fhir/data/ from the official R4 definitions (needs ../shared and npm).
definitions:
	$(PYTHON) tools/generate_definitions.py

clean:
	rm -rf $(VENV) var .pytest_cache
