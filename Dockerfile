FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY service ./service
COPY jobs ./jobs
RUN pip install .

COPY alembic.ini ./
COPY migrations ./migrations

RUN useradd --system --uid 10001 jobsvc \
    && mkdir -p /data/artifacts && chown jobsvc /data/artifacts
USER jobsvc

EXPOSE 8000 9181
CMD ["jobsvc", "api", "--host", "0.0.0.0", "--port", "8000"]
