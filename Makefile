# The README's commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "ccadmin needs Python 3.11 or newer: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Migrations, first admin and demo data (first start), embedded Redis, web, api, worker.
run: $(STAMP)
	$(BIN)/python -m ccadmin.devserver

# The whole suite; TEST_DATABASE_URL / TEST_REDIS_URL select real services.
test: $(STAMP)
	$(BIN)/pytest

# Everything but the tests that start the whole stack or a browser.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
