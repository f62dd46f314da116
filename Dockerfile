# syntax=docker/dockerfile:1
# The service's image, installed from uv.lock as `make` installs it: the same resolution,
# each file checked against its hash, nothing re-resolved.

FROM python:3.11-slim AS build

# uv at the version the Makefile pins (UV_VERSION), from the machine's own pip as there
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app

# The dependencies first, from the lock alone: this layer is built again only when
# pyproject.toml or uv.lock change, not at every change of the code.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the service itself, installed (not linked to this directory) into the same venv.
COPY README.md ./
COPY service ./service
COPY jobs ./jobs
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable


FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PATH=/app/.venv/bin:$PATH
WORKDIR /app

# The user the processes run as, and the directories they write: artifacts (a volume
# shared by api and worker) and prometheus_client's multiprocess files (compose mounts a
# tmpfs there; without one, the image's own empty directory).
RUN groupadd --system --gid 10001 jobsvc \
    && useradd --system --uid 10001 --gid 10001 --no-create-home jobsvc \
    && mkdir -p /data/artifacts /data/metrics \
    && chown jobsvc:jobsvc /data/artifacts /data/metrics

COPY --from=build /app/.venv /app/.venv
COPY alembic.ini ./
COPY migrations ./migrations

USER jobsvc
EXPOSE 8000 9181
CMD ["jobsvc", "api", "--host", "0.0.0.0", "--port", "8000"]
