"""Private PostgreSQL and Redis servers on free ports, which fault tests may stop, restart
and flush without touching anything else on the machine."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import Engine, create_engine, text

from service.localservers import LocalPostgres, LocalRedis, free_port, port_open
from tests.e2e.conftest import FAST, TEST_TASKS, Stack
from tests.support import Ledger, make_key, migrate


@dataclass
class Private:
    pg: LocalPostgres
    redis: LocalRedis
    engine: Engine

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.pg.url("jobsvc"),
            "REDIS_URL": self.redis.url(),
            "JOBS_LOCAL_SERVERS": "never",
            **FAST,
            **TEST_TASKS,
        }

    def redis_client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.redis.port, socket_timeout=5)

    def ensure_running(self) -> None:
        if not port_open("127.0.0.1", self.pg.port):
            self.pg.start()
        if not port_open("127.0.0.1", self.redis.port):
            self.redis.start()


@pytest.fixture(scope="session")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    root = tmp_path_factory.mktemp("private-servers")
    pg = LocalPostgres(root / "postgres", free_port())
    redis = LocalRedis(root / "redis", free_port(), persistent=False)
    pg.start()
    redis.start()
    admin = create_engine(
        pg.url("postgres").replace("+asyncpg", "+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE jobsvc"))
        migrate(pg.url("jobsvc"))
        engine = create_engine(pg.url("jobsvc").replace("+asyncpg", "+psycopg"), pool_pre_ping=True)
        yield Private(pg, redis, engine)
        engine.dispose()
    finally:
        admin.dispose()
        pg.stop()
        redis.stop()


@pytest.fixture
def world(private: Private, tmp_path: Path) -> Iterator[tuple[Stack, Ledger, Private]]:
    """A clean private ledger and Redis with the API up; servers restored afterwards."""
    private.ensure_running()
    with private.engine.begin() as conn:
        conn.execute(
            text("TRUNCATE jobs, job_events, api_keys, analytics_events, schedules, queue_states")
        )
    with private.redis_client() as r:
        r.flushall()
    stack = Stack(tmp_path, make_key(private.engine, "tester"), private.env)
    try:
        stack.api()
        yield stack, Ledger(private.engine), private
    finally:
        stack.close()
        private.ensure_running()
