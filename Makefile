# The two commands: `make run` (the whole stack, in the foreground) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test soak lint format install clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	command -v wrk >/dev/null || apt-get install -y -q wrk || echo "no wrk: make bench needs it"
	command -v hey >/dev/null || apt-get install -y -q hey || echo "no hey: make bench needs it"
	command -v chromium >/dev/null || apt-get install -y -q chromium || echo "no chromium: the browser tests will fail"
	test -x /usr/sbin/pgbouncer || apt-get install -y -q pgbouncer || echo "no pgbouncer: its tests will fail"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,local]'
	touch $@

# A developer's machine: no API keys, an open dashboard, no rate limit (JOBS_DEV_MODE).
run: install
	JOBS_DEV_MODE=$${JOBS_DEV_MODE:-1} $(BIN)/jobsvc run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

# Full-size fault runs (the default 30-s lease, the 2,000-job chaos soak): about 10 minutes.
soak: install
	$(BIN)/pytest -m soak

# The benchmark suite (about 11 minutes; `make install` puts in wrk and hey, its load generators).
bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
