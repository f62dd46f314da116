"""The service behind a real PgBouncer in transaction mode: every transaction may land on
another server connection, so nothing may rely on a session (prepared statements, LISTEN).
The API and the workers reach the ledger through PgBouncer; only each API process's LISTEN
connection goes to PostgreSQL itself (JOBS_LISTEN_DATABASE_URL)."""

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from redis import Redis
from rq.job import Job
from sqlalchemy import create_engine, make_url, text

from service.settings import Settings
from tests.e2e.conftest import BIN, FAST, TEST_TASKS, Stack, wait_until
from tests.e2e.pgbouncer import PgBouncer
from tests.support import Ledger, create_fresh_database, drop_database

pytestmark = pytest.mark.e2e

POOL_SIZE = 4


@pytest.fixture
def bouncer(settings: Settings) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(str(settings.database_url), pool_size=POOL_SIZE)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def pooled(make_stack: Callable[..., Stack], bouncer: PgBouncer) -> Stack:
    """A stack whose ledger connections all go through PgBouncer."""
    direct = os.environ["DATABASE_URL"]
    return make_stack(
        DATABASE_URL=bouncer.url(direct),
        JOBS_DB_TRANSACTION_POOLING="1",
        JOBS_LISTEN_DATABASE_URL=direct,
        JOBS_KEY_CACHE_S="1",
        **FAST,
        **TEST_TASKS,
    )


def test_a_job_s_whole_life_runs_through_pgbouncer(
    pooled: Stack, bouncer: PgBouncer, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    stack = pooled
    stack.reconciler()

    # Recorded, but its hand-over to RQ lost: the reconciler delivers it again.
    lost = stack.submit("echo", value="lost")
    redis_conn.lrem("rq:queue:default", 0, lost)
    redis_conn.delete(Job.key_for(lost))

    stack.named_workers(w1=False, w2=True)
    singles = [stack.submit("echo", value=i) for i in range(20)]
    batch = stack.http.post(
        "/jobs/batch", json={"jobs": [{"task": "echo", "args": {"value": i}} for i in range(30)]}
    )
    assert batch.status_code == 202, batch.text
    flaky = {"task": "flaky", "args": {"fail_times": 1}, "max_attempts": 2, "backoff_s": 0}
    retried = stack.http.post("/jobs", json=flaky).json()["id"]
    for job_id in [lost, *singles, *(job["id"] for job in batch.json()["jobs"]), retried]:
        assert stack.wait(job_id)["status"] == "finished", stack.job(job_id)
    assert stack.job(lost)["result"] == "lost"
    assert [stack.job(job_id)["result"] for job_id in singles] == list(range(20))
    assert stack.job(retried)["attempt"] == 2

    # A long-poll wakes when a worker finishes the job (LISTEN, beside PgBouncer).
    napping = stack.submit("sleep", seconds=1)
    started = time.monotonic()
    waited = stack.http.get(f"/jobs/{napping}", params={"wait": 20}, timeout=30)
    assert waited.json()["status"] == "finished"
    assert time.monotonic() - started < 20  # woken, not timed out

    # Canceled while it runs.
    long = stack.submit("sleep", seconds=30)
    assert stack.wait(long, ("started",))["status"] == "started"
    assert stack.http.post(f"/jobs/{long}/cancel").status_code in (200, 202)  # by its worker
    assert stack.wait(long)["status"] == "canceled"

    # Keys made and revoked through PgBouncer; the API hears of the revocation.
    key = stack.cli("keys", "create", "through-bouncer")
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.http.get("/tasks", headers=headers).status_code == 200
    stack.cli("keys", "revoke", "through-bouncer")
    wait_until(
        lambda: stack.http.get("/tasks", headers=headers).status_code == 401,
        timeout=5,
        what="the revoked key refused",
    )

    # Every ledger connection went through PgBouncer: no prepared-statement errors, and
    # its server connections stayed within the pool.
    for name in ("api", "w1", "w2", "reconciler"):
        assert "prepared statement" not in stack.log(name), stack.log(name)
    assert len(_servers(bouncer)) <= POOL_SIZE
    assert ledger_rows.count("status = 'finished'") == 53


def test_migrations_run_through_pgbouncer(settings: Settings, bouncer: PgBouncer) -> None:
    name = f"{bouncer.database}_bounced"
    direct = create_fresh_database(settings, name)
    try:
        env = {
            **os.environ,
            "DATABASE_URL": bouncer.url(direct),
            "JOBS_DB_TRANSACTION_POOLING": "1",
        }
        for step in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
            done = subprocess.run(
                [str(BIN / "alembic"), *step], env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout + done.stderr
        engine = create_engine(make_url(direct).set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            tables = set(conn.execute(text("SELECT tablename FROM pg_tables")).scalars())
        engine.dispose()
        assert {"jobs", "job_events", "api_keys", "alembic_version"} <= tables
    finally:
        drop_database(settings, name)


def _servers(bouncer: PgBouncer) -> list[dict[str, str]]:
    """PgBouncer's connections to PostgreSQL for the test database."""
    return [row for row in bouncer.show("SERVERS") if row["database"] == bouncer.database]


def test_eight_processes_share_the_pool_s_server_connections(
    pooled: Stack, bouncer: PgBouncer, ledger_rows: Ledger
) -> None:
    stack = pooled
    stack.stop("api")
    stack.api("jobsvc", "api", "--port", str(stack.port), "--workers", "3")
    for i in range(3):
        stack.worker(f"w{i}")
    stack.worker("w3", simple=True)
    stack.reconciler()  # 3 API processes, 4 workers, a reconciler

    # a connection of its own for each submit: the kernel hands them to all three
    jobs = []
    for i in range(150):
        r = httpx.post(
            f"http://127.0.0.1:{stack.port}/jobs",
            json={"task": "echo", "args": {"value": i}},
            headers={"Authorization": stack.http.headers["Authorization"]},
        )
        assert r.status_code == 202, r.text
        jobs.append(r.json()["id"])
    most = 0
    for job_id in jobs:
        most = max(most, len(_servers(bouncer)))
        assert stack.wait(job_id)["status"] == "finished", stack.job(job_id)

    clients = [row for row in bouncer.show("CLIENTS") if row["database"] == bouncer.database]
    assert len({row["addr"] + ":" + row["port"] for row in clients}) >= 8
    assert 1 <= most <= POOL_SIZE
    assert ledger_rows.count("status = 'finished'") == 150
