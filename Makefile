# The two commands of the README: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE_ENV := data_samples/sample.env

.PHONY: demo test test-fast ui bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Set up, start the embedded PostgreSQL (unless DATABASE_URL is set) and migrate every sample store.
demo: $(STAMP)
	$(BIN)/migration-pipeline run --env-file $(SAMPLE_ENV)

## Set up with dev dependencies and run the whole suite against a real PostgreSQL, in TEST_PROCESSES
## processes (pytest-xdist; a test file stays in one process, each process has its own server or databases).
TEST_PROCESSES ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile
test: $(STAMP)
	$(PYTEST)

## The suite without the tests marked slow (browser, Celery, CLI end to end).
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

## The Dagster UI on the same database and Dagster instance as `make demo`.
ui: $(STAMP)
	$(BIN)/migration-pipeline ui --env-file $(SAMPLE_ENV)

## Benchmark: USERS=100000 make bench
bench: $(STAMP)
	$(BIN)/migration-pipeline bench --users $${USERS:-20000}

lint: $(STAMP)
	$(BIN)/ruff check migration_pipeline migration_pipeline_tests
	$(BIN)/mypy migration_pipeline

clean:
	rm -rf reports backups .bench .dagster_home
