"""`/queues`: each queue's state, and pausing one (in-process API and worker; the run with
real processes and restarts is tests/e2e/test_queues.py)."""

import httpx
import pytest
from sqlalchemy import Engine

from service import ledger
from service.settings import Settings
from tests.support import Ledger, api_client, make_key, run_worker_burst


@pytest.fixture
async def admin(settings: Settings, sql_engine: Engine) -> httpx.AsyncClient:
    async with api_client(settings, make_key(sql_engine, "ops", admin=True)) as c:
        yield c  # type: ignore[misc]


async def test_a_paused_queue_keeps_its_jobs_queued_while_others_run(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    paused = await admin.post("/queues/default/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["paused_by"] == "ops"
    echo = (await client.post("/jobs", json={"task": "echo", "args": {"value": 1}})).json()
    report = (await client.post("/jobs", json={"task": "generate_report"})).json()

    run_worker_burst(settings)

    assert ledger_rows.row(echo["id"])["status"] == "queued"  # type: ignore[index]
    assert ledger_rows.row(report["id"])["status"] == "finished"  # type: ignore[index]
    listed = {q["name"]: q for q in (await admin.get("/queues")).json()}
    assert listed["default"]["paused"] is True and listed["default"]["queued"] == 1
    assert listed["default"]["in_redis"] == 1  # left in its queue
    assert listed["reports"]["paused"] is False and listed["reports"]["queued"] == 0
    metrics = (await admin.get("/metrics")).text
    assert 'jobsvc_queue_paused{queue="default"} 1.0' in metrics
    assert 'jobsvc_queue_paused{queue="reports"} 0.0' in metrics

    resumed = await admin.post("/queues/default/resume")
    assert resumed.json()["paused"] is False
    run_worker_burst(settings)
    assert ledger_rows.row(echo["id"])["status"] == "finished"  # type: ignore[index]


async def test_the_claim_refuses_a_job_of_a_paused_queue(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, sql_engine: Engine
) -> None:
    job = (await client.post("/jobs", json={"task": "echo"})).json()
    await admin.post("/queues/default/pause")

    with sql_engine.begin() as conn:  # as a worker that popped it just as the pause landed
        assert ledger.claim(conn, job["id"], "w", 30) is None
    await admin.post("/queues/default/resume")
    with sql_engine.begin() as conn:
        claimed = ledger.claim(conn, job["id"], "w", 30)
    assert claimed is not None and claimed.status == "started"


async def test_queues_are_for_admins_and_known_names(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    assert (await client.get("/queues")).status_code == 403
    assert (await client.post("/queues/default/pause")).status_code == 403
    unknown = await admin.post("/queues/nowhere/pause")
    assert unknown.status_code == 404 and "the queues: " in unknown.text
    listed = (await admin.get("/queues")).json()
    assert {q["name"] for q in listed} >= {"default", "email", "reports"}
    assert all(not q["paused"] and q["workers"] == 0 for q in listed)
