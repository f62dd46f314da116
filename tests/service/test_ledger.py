"""Ledger statements: the claim is the lock, final writes are fenced by attempt."""

import uuid

import httpx
from sqlalchemy import Engine, text

from service import ledger
from tests.support import Ledger


async def _queued(client: httpx.AsyncClient) -> uuid.UUID:
    r = await client.post("/jobs", json={"task": "sleep", "args": {"seconds": 1}})
    return uuid.UUID(r.json()["id"])


async def test_claim_starts_a_queued_job_once(
    client: httpx.AsyncClient, sql_engine: Engine
) -> None:
    job_id = await _queued(client)

    with sql_engine.begin() as conn:
        first = ledger.claim(conn, job_id, "w1", lease_s=60)
    with sql_engine.begin() as conn:
        second = ledger.claim(conn, job_id, "w2", lease_s=60)

    assert first is not None
    assert first.status == "started"
    assert first.attempt == 1
    assert first.worker == "w1"
    lease = (first.lease_expires_at - first.started_at).total_seconds()
    assert lease == 60  # the lease asked for, whatever the task's timeout (3700 s)
    assert second is None


async def test_stale_attempt_cannot_overwrite_a_newer_one(
    client: httpx.AsyncClient, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    job_id = await _queued(client)
    with sql_engine.begin() as conn:
        old = ledger.claim(conn, job_id, "w1", lease_s=60)
        assert old is not None
        # a later attempt took the job over (as a lease rescue does)
        conn.execute(text("UPDATE jobs SET status = 'queued' WHERE id = :id"), {"id": str(job_id)})
        new = ledger.claim(conn, job_id, "w2", lease_s=60)
        assert new is not None
        assert new.attempt == 2

    with sql_engine.begin() as conn:
        assert ledger.finish(conn, job_id, old.attempt, "late") is None
        assert ledger.fail(conn, job_id, old.attempt, {"type": "x", "message": "late"}) is None
        done = ledger.finish(conn, job_id, new.attempt, "current")

    assert done is not None
    assert done.status == "finished"
    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["result"] == "current"
    assert row["worker"] == "w2"
    assert ledger_rows.statuses(job_id) == ["queued", "started", "started", "finished"]


async def test_terminal_rows_never_change(client: httpx.AsyncClient, sql_engine: Engine) -> None:
    job_id = await _queued(client)
    await client.post(f"/jobs/{job_id}/cancel")

    with sql_engine.begin() as conn:
        assert ledger.claim(conn, job_id, "w1", lease_s=60) is None
        assert ledger.finish(conn, job_id, 0, "x") is None
        assert ledger.finish(conn, job_id, 1, "x") is None
