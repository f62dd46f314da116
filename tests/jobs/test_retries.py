"""Retries with backoff, timeouts, `POST /jobs/{id}/retry`, and canceling a running job."""

import time
import uuid

import httpx
import pytest
from sqlalchemy import Engine

from service import ledger
from service.outcomes import retry_delay
from service.settings import Settings
from tests.support import Ledger, run_reconcile_pass, run_worker_burst


def run_until_final(settings: Settings, ledger_rows: Ledger, job_id: str, rounds: int = 10) -> None:
    """Worker and reconciler passes until the job is final, as the processes would."""
    for _ in range(rounds):
        run_worker_burst(settings)
        row = ledger_rows.row(job_id)
        assert row is not None
        if row["status"] in ("finished", "failed", "canceled"):
            return
        time.sleep(0.05)
        run_reconcile_pass(settings)
    raise AssertionError(f"job {job_id} not final after {rounds} rounds")


async def test_failed_attempts_retry_until_the_last_fails(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    r = await client.post(
        "/jobs",
        json={"task": "fail", "args": {"message": "flaky"}, "max_attempts": 3, "backoff_s": 0},
    )
    job_id = r.json()["id"]

    run_worker_burst(settings)
    waiting = ledger_rows.row(job_id)
    assert waiting is not None and waiting["status"] == "scheduled"
    assert waiting["attempt"] == 1 and waiting["error"]["message"] == "flaky"
    assert waiting["run_at"] is not None

    run_until_final(settings, ledger_rows, job_id)

    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "failed" and row["attempt"] == 3
    assert ledger_rows.statuses(job_id) == [
        "queued", "started", "scheduled",
        "queued", "started", "scheduled",
        "queued", "started", "failed",
    ]  # fmt: skip
    errors = [e["detail"].get("error") for e in ledger_rows.events(job_id)]
    assert errors[2] == {"type": "TaskFailed", "message": "flaky"}


async def test_timeout_is_retried_with_type_timeout(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    r = await client.post(
        "/jobs",
        json={
            "task": "sleep",
            "args": {"seconds": 5},
            "timeout_s": 1,
            "max_attempts": 2,
            "backoff_s": 0,
        },
    )
    job_id = r.json()["id"]

    run_until_final(settings, ledger_rows, job_id)

    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "failed" and row["attempt"] == 2
    assert row["error"]["type"] == "timeout"
    assert [e["detail"].get("error", {}).get("type") for e in ledger_rows.events(job_id)] == [
        None, None, "timeout", None, None, "timeout",
    ]  # fmt: skip


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_retry_delay_grows_with_jitter_and_a_cap(attempt: int) -> None:
    ceiling = min(100.0, 2.0 * 2 ** (attempt - 1))
    delays = [retry_delay(2.0, attempt, cap_s=100) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


async def test_retry_endpoint_runs_a_failed_job_again(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    job_id = (await client.post("/jobs", json={"task": "fail"})).json()["id"]
    run_worker_burst(settings)

    r = await client.post(f"/jobs/{job_id}/retry")

    assert r.status_code == 202
    assert r.json()["status"] == "queued" and r.json()["enqueued_at"] is not None
    assert r.json()["max_attempts"] == 2  # room for the new attempt
    run_worker_burst(settings)
    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "failed" and row["attempt"] == 2
    retried = ledger_rows.events(job_id)[3]
    assert retried["status"] == "queued"
    assert retried["detail"] == {"by": "client", "action": "retry"}


async def test_retry_endpoint_runs_a_canceled_job(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    job_id = (await client.post("/jobs", json={"task": "echo", "args": {"value": 5}})).json()["id"]
    await client.post(f"/jobs/{job_id}/cancel")

    assert (await client.post(f"/jobs/{job_id}/retry")).status_code == 202
    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "finished" and row["result"] == 5


async def test_retry_endpoint_refuses_other_states(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    queued = (await client.post("/jobs", json={"task": "echo"})).json()["id"]
    r = await client.post(f"/jobs/{queued}/retry")
    assert r.status_code == 409
    assert "is queued; only failed or canceled jobs can be retried" in r.json()["detail"]

    run_worker_burst(settings)
    assert (await client.post(f"/jobs/{queued}/retry")).status_code == 409
    assert (await client.post(f"/jobs/{uuid.uuid4()}/retry")).status_code == 404


async def test_cancel_of_a_running_job_discards_its_outcome(
    client: httpx.AsyncClient, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    job_id = uuid.UUID((await client.post("/jobs", json={"task": "echo"})).json()["id"])
    with sql_engine.begin() as conn:
        running = ledger.claim(conn, job_id, "no-such-worker", lease_s=60)
    assert running is not None

    r = await client.post(f"/jobs/{job_id}/cancel")

    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    assert r.json()["notice"] == "canceled while running: no live worker held it"
    with sql_engine.begin() as conn:  # the worker's late outcome
        assert ledger.finish(conn, job_id, running.attempt, "late") is None
    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "canceled" and row["result"] is None
    assert ledger_rows.events(job_id)[-1]["detail"] == {"by": "client"}
