"""Helpers shared by the tests: databases, direct ledger reads, in-process workers."""

import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from sqlalchemy import Engine, create_engine, make_url, text

from service.settings import Settings

# Names of what this test run makes on shared servers (databases), so that nothing a user,
# `make bench` or another run keeps is touched.
RUN_ID = str(os.getpid())

# Redis database numbers a test run never takes: a user's (0) and `make bench`'s (11).
_NOT_FOR_TESTS = {0, 11}


# Every table a test may fill: emptied before each test.
LEDGER_TABLES = "jobs, job_events, api_keys, analytics_events, schedules, queue_states, rate_limits"


def claim_redis_db(url: str) -> tuple[int, Redis]:
    """A Redis database number no other test run holds, and the connection that holds it.

    A run holds number N by keeping a connection named `jobsvc-test-db<N>-<run id>` open;
    the name goes with the process, however it ends. Two runs starting at once may both
    see N free: each looks again after naming itself, and the later one moves on.
    """
    holder = Redis.from_url(url)
    for db in (n for n in range(1, 16) if n not in _NOT_FOR_TESTS):
        prefix = f"jobsvc-test-db{db}-"
        if any(c["name"].startswith(prefix) for c in holder.client_list()):
            continue
        holder.client_setname(f"{prefix}{RUN_ID}")
        holders = sorted(
            int(c["name"].removeprefix(prefix))
            for c in holder.client_list()
            if c["name"].startswith(prefix)
        )
        if holders[0] == int(RUN_ID):
            return db, holder
        holder.client_setname("")
    holder.close()
    raise RuntimeError("every Redis database a test run may use is held by another run")


def create_fresh_database(settings: Settings, name: str) -> str:
    """Drop and create database `name` on the test server; returns its async URL."""
    url = make_url(settings.sync_database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(str(settings.database_url)).set(database=name).render_as_string(False)


def drop_database(settings: Settings, name: str) -> None:
    url = make_url(settings.sync_database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(database_url: str, revision: str = "head", *, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config("alembic.ini")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    if down:
        command.downgrade(cfg, revision)
    else:
        command.upgrade(cfg, revision)


class Ledger:
    """Read the ledger directly, as an operator would with psql."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def row(self, job_id: str | uuid.UUID) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": str(job_id)})
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def count(self, where: str = "true") -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM jobs WHERE {where}")).scalar_one())

    def events(self, job_id: str | uuid.UUID) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT * FROM job_events WHERE job_id = :id ORDER BY id"), {"id": str(job_id)}
            ).mappings()
            return [dict(r) for r in rows]

    def statuses(self, job_id: str | uuid.UUID) -> list[str]:
        return [e["status"] for e in self.events(job_id)]


def run_worker_burst(settings: Settings, *queues: str) -> None:
    """Run every queued job in-process with the ledger hooks (SimpleWorker), then return."""
    from service import broker, registry
    from service.worker import SimpleLedgerWorker

    registry.load(settings.task_modules)
    connection = broker.connect(settings)
    try:
        worker = SimpleLedgerWorker(
            list(queues) or registry.queues(), connection=connection, settings=settings
        )
        worker.work(burst=True, logging_level="WARNING")
    finally:
        connection.close()


def run_reconcile_pass(settings: Settings) -> Any:
    """One reconciler pass in-process; returns its Repairs."""
    from service import broker
    from service.reconcile import Reconciler

    engine = create_engine(settings.sync_database_url)
    redis = broker.connect(settings)
    try:
        return Reconciler(settings, engine, redis).run_pass()
    finally:
        engine.dispose()
        redis.close()


def make_key(engine: Engine, name: str, admin: bool = False) -> str:
    """A new API key for `name`, straight into the ledger database."""
    from service import keys

    with engine.begin() as conn:
        return keys.create(conn, name, admin)


@asynccontextmanager
async def api_client(settings: Settings, key: str | None) -> AsyncIterator[httpx.AsyncClient]:
    from service.main import create_app

    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as c:
            yield c


def beat_spans(path: Path) -> dict[int, tuple[float, float]]:
    """Each attempt's first and last beat, from the `beat` task's own record."""
    seen: dict[int, list[float]] = {}
    for line in path.read_text().splitlines():
        attempt, at = line.split()
        seen.setdefault(int(attempt), []).append(float(at))
    return {attempt: (min(beats), max(beats)) for attempt, beats in seen.items()}


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (tests' loopback servers subclass it)."""

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler], path: str = "/hook") -> Iterator[str]:
    """Serve `handler` on a free loopback port, in a thread; yields the URL of `path`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}"
    finally:
        server.shutdown()
        server.server_close()
