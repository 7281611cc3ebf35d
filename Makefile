# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DB ?= sqlite:///var/adapter.db

.PHONY: install run test test-fast lint docs bench screenshots definitions clean

$(BIN)/fhir-adapter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The Node fhir-kit-client for tests/test_node_client.py (skipped without npm, except in CI).
NODE_CLIENT := tests/node/node_modules/.package-lock.json
$(NODE_CLIENT): tests/node/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --silent; \
	else echo "npm not found: the Node client test will be skipped"; fi

install: $(BIN)/fhir-adapter $(NODE_CLIENT)

run: install
	$(BIN)/fhir-adapter demo --db $(DB)

# The suite over the machine's cores (pytest-xdist; each worker its own PostgreSQL database):
# WORKERS=0 runs it in one process. `make test` runs everything; `make test-fast`, the inner
# loop, leaves out the tests marked slow (the end-to-end ones of 3 s or more).
WORKERS ?= auto

test: install
	$(BIN)/python -m pytest -q -n $(WORKERS) $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -n $(WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check adapter tests bench tools fixtures
	$(BIN)/mypy adapter
	$(BIN)/lint-imports  # the layers: pyproject.toml [tool.importlinter]

# The documentation site (mkdocs.yml, docs/) into var/site/; --strict: a broken link or anchor fails.
docs: install
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict -d var/site

bench: install
	$(BIN)/python -m bench.read

# docs/screenshots/{study,adherence,child,workbench}.png: the pages on the demo store, in Debian's Chromium
# (apt-get install chromium; Playwright never downloads a browser here).
screenshots: install
	$(BIN)/python tools/screenshots.py

# Regenerate adapter/fhir/data/ from the official R4 definitions (needs ../shared and npm).
definitions:
	$(PYTHON) tools/generate_definitions.py

clean:
	rm -rf $(VENV) var .pytest_cache
