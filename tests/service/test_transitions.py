"""Property: whatever order events arrive in, the ledger's transition functions keep a
final row final (only a client's retry reopens it), never let attempts pass the maximum,
and record only legal transitions."""

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service import errors, ledger, rows
from service.settings import Settings
from tests.support import Ledger

FINAL = {"finished", "failed", "canceled"}
LEGAL = {
    (None, "queued"), (None, "scheduled"),
    ("queued", "started"), ("queued", "canceled"), ("queued", "queued"),
    ("scheduled", "queued"), ("scheduled", "started"), ("scheduled", "canceled"),
    ("started", "finished"), ("started", "failed"), ("started", "scheduled"),
    ("started", "queued"), ("started", "canceled"),
    ("failed", "queued"), ("canceled", "queued"),
}  # fmt: skip

OPS = [
    "claim", "finish", "fail", "retry_later", "stale_finish", "stale_fail",
    "cancel", "client_retry", "lease_expires", "run_at_comes",
]  # fmt: skip


class Driver:
    """Applies one named event to one job, as the API, a worker or a reconciler would."""

    def __init__(self, engine: Engine, async_engine: AsyncEngine, loop: asyncio.AbstractEventLoop):
        self.engine = engine
        self.async_engine = async_engine
        self.loop = loop

    def new_job(self, max_attempts: int, scheduled: bool) -> uuid.UUID:
        job = rows.NewJob(
            id=uuid.uuid4(), task="echo", queue="default", args={}, timeout_s=30,
            max_attempts=max_attempts, backoff_s=0, owner="prop", meta={},
            run_at=ledger_now_plus(3600) if scheduled else None,
        )  # fmt: skip
        self._api(lambda conn: ledger.insert_jobs(conn, [job]))
        return job.id

    def _api(self, fn: Any) -> Any:
        async def run() -> Any:
            async with self.async_engine.connect() as conn:
                try:
                    return await fn(conn)
                finally:
                    await conn.commit()

        return self.loop.run_until_complete(run())

    def _sync(self, sql: str, job_id: uuid.UUID) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql), {"id": job_id})

    def apply(self, op: str, job_id: uuid.UUID, attempt: int) -> None:
        error = {"type": "TaskFailed", "message": "x", "traceback": None}
        with self.engine.begin() as conn:
            match op:
                case "claim":
                    ledger.claim(conn, job_id, "w", lease_s=60)
                case "finish":
                    ledger.finish(conn, job_id, attempt, "ok")
                case "fail":
                    ledger.fail(conn, job_id, attempt, error)
                case "retry_later":
                    ledger.retry_later(conn, job_id, attempt, error, 0)
                case "stale_finish":
                    ledger.finish(conn, job_id, attempt - 1, "stale")
                case "stale_fail":
                    ledger.fail(conn, job_id, attempt - 1, error)
        if op == "cancel":
            self._api_ignoring(lambda conn: ledger.cancel(conn, job_id, "prop"))
        elif op == "client_retry":
            self._api_ignoring(lambda conn: ledger.retry(conn, job_id, "prop"))
        elif op == "lease_expires":
            self._sync(
                "UPDATE jobs SET lease_expires_at = now() - interval '1 s' "
                "WHERE id = :id AND status = 'started'",
                job_id,
            )
            with self.engine.begin() as conn:
                ledger.rescue_expired(conn, limit=10_000)
        elif op == "run_at_comes":
            self._sync(
                "UPDATE jobs SET run_at = now() WHERE id = :id AND status = 'scheduled'", job_id
            )
            with self.engine.begin() as conn:
                ledger.release_due(conn, limit=10_000)

    def _api_ignoring(self, fn: Any) -> None:
        with contextlib.suppress(
            errors.JobAlreadyTerminal, errors.JobNotRetryable, errors.AttemptStillRunning
        ):
            self._api(fn)


def ledger_now_plus(seconds: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def driver(settings: Settings, database: str, sql_engine: Engine) -> Iterator[Driver]:
    loop = asyncio.new_event_loop()
    async_engine = create_async_engine(str(settings.database_url), pool_size=2)
    try:
        yield Driver(sql_engine, async_engine, loop)
    finally:
        loop.run_until_complete(async_engine.dispose())
        loop.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=25),
    max_attempts=st.integers(min_value=1, max_value=3),
    scheduled=st.booleans(),
)
def test_transitions_keep_the_invariants(
    driver: Driver, ledger_rows: Ledger, ops: list[str], max_attempts: int, scheduled: bool
) -> None:
    job_id = driver.new_job(max_attempts, scheduled)
    before = ledger_rows.row(job_id)
    assert before is not None
    for op in ops:
        driver.apply(op, job_id, before["attempt"])
        after = ledger_rows.row(job_id)
        assert after is not None
        if before["status"] in FINAL and op != "client_retry":
            assert after == before, f"{op} changed a final row"
        assert after["attempt"] <= after["max_attempts"]
        assert after["attempt"] >= before["attempt"]
        before = after

    statuses = [None, *ledger_rows.statuses(job_id)]
    for transition in itertools.pairwise(statuses):
        assert transition in LEGAL, transition
