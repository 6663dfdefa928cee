# shelfwise: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DB     ?=
DBFLAG := $(if $(DB),--db $(DB),)

.PHONY: venv system demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,distributed]'
	touch $(STAMP)

venv: $(STAMP)

## system: Debian packages the browser tests and the drills use (Chromium, HAProxy; PostgreSQL's server
## binaries for the drill's primary + standby, redis-server for its replica and Sentinels), if missing
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system:
	@command -v chromium >/dev/null && command -v haproxy >/dev/null && command -v redis-server >/dev/null \
	  && command -v pgrep >/dev/null && ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    chromium haproxy postgresql redis-server procps)

## demo: load Online Retail into the embedded store, train EASE and the two-stage hybrid and activate the
## best within a 15 ms p99 budget, build a hybrid search index, and serve
## the API and pages on http://127.0.0.1:8000 (Ctrl-C stops it)
DEMO_USERS ?= ["17850","13047","12583","14688","15311"]
demo: venv
	$(BIN)/shelfwise ingest events data/online_retail/online_retail.csv.gz --format online-retail $(DBFLAG)
	$(BIN)/shelfwise quality-report $(DBFLAG)
	$(BIN)/shelfwise models select --candidates ease,hybrid --budget-ms 15 $(DBFLAG)
	SHELFWISE_DASHBOARD_ON_START=1 SHELFWISE_DEMO_USERS='$(DEMO_USERS)' \
	  $(BIN)/shelfwise serve --port 8000 $(DBFLAG)

## lint: ruff (lint + format), import-linter (layers point down), mypy (core, data, store)
lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

## test: lint, then the whole test suite (real SQLite, PostgreSQL on 127.0.0.1:5432) on TEST_WORKERS
## pytest-xdist workers (each its own PostgreSQL database and free ports; TEST_WORKERS=0: one process)
TEST_WORKERS ?= 2
test: lint system
	$(BIN)/pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

## bench: slow benchmarks; figures in benchmarks/results/*.json and benchmarks/results/README.md
bench: venv
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .hypothesis
