# The README's commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench bench-ingest bench-tools bench-list clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "ccadmin needs Python 3.11 or newer: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Migrations, first admin and demo data (first start), embedded Redis, web, api, worker.
run: $(STAMP)
	$(BIN)/python -m devtools.devserver

# The whole suite; TEST_DATABASE_URL / TEST_REDIS_URL select real services.
test: $(STAMP)
	$(BIN)/pytest

# The tests that run in this process only: no other processes, clusters or browsers.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not integration and not faults and not slow and not browser"

# The load benchmark (docs/performance.md): loopback only, about 11 minutes.
# BENCH_ARGS=--full runs 30 s ladder steps; --sweep-threads also tries 4/8/16/32 threads.
bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "make bench needs wrk: sudo apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Ingest API throughput (docs/performance.md): single PUTs, batches, a 1M-row import to live.
# DATABASE_URL selects the database (default: a temporary SQLite file); BENCH_ARGS=--rows N.
bench-ingest: $(STAMP)
	$(BIN)/python -m bench.ingest $(BENCH_ARGS)

# Sending tools: Segment batches against content:batch, a shuffled replay (docs/performance.md).
bench-tools: $(STAMP)
	$(BIN)/python -m bench.tools $(BENCH_ARGS)

# The admin's content list at 2,000,000 entries (docs/performance.md); DATABASE_URL: PostgreSQL.
bench-list: $(STAMP)
	$(BIN)/python -m bench.content_list $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
