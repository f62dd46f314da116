"""`/queues`: each queue's state, and pausing one (in-process API and worker; the run with
real processes and restarts is tests/e2e/test_queues.py)."""

import asyncio
import uuid

import httpx
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, text

from service import admission, broker, concurrency, ledger, queues, sql
from service.ledger_writer import LedgerWriter
from service.settings import Settings
from tests.support import Ledger, api_client, make_key, run_reconcile_pass, run_worker_burst


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


async def test_a_job_popped_as_the_pause_landed_is_held_and_the_resume_hands_it_back(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    settings: Settings,
    redis_conn: Redis,
    ledger_rows: Ledger,
) -> None:
    job = (await client.post("/jobs", json={"task": "echo"})).json()
    await admin.post("/queues/default/pause")
    # as a worker that popped it before it saw the pause
    assert redis_conn.lpop(broker.queue("default", redis_conn).key) == job["id"].encode()
    writer = LedgerWriter(settings)
    try:
        popped = Job.fetch(job["id"], connection=redis_conn, serializer=JSONSerializer)
        assert admission.admit(writer, popped, "w", settings) is None
    finally:
        writer.dispose()
    broker.forget(redis_conn, job["id"], "default", settings.result_ttl_s)

    held = (await client.get(f"/jobs/{job['id']}")).json()
    assert held["status"] == "queued" and held["held"] is True and held["attempt"] == 0
    events = (await client.get(f"/jobs/{job['id']}/events")).json()
    assert events[-1]["detail"] == {"by": "worker", "held": "queue 'default' paused"}
    run_reconcile_pass(settings)  # not lost: held on purpose while the queue is paused
    assert (await client.get(f"/jobs/{job['id']}")).json()["held"] is True

    resumed = (await admin.post("/queues/default/resume")).json()
    assert resumed["paused"] is False and resumed["in_redis"] == 1  # handed back at once
    events = (await client.get(f"/jobs/{job['id']}/events")).json()
    assert events[-1]["detail"] == {"by": "client", "released": "queue 'default' resumed"}
    run_worker_burst(settings)
    assert ledger_rows.row(job["id"])["status"] == "finished"  # type: ignore[index]
    assert ledger_rows.statuses(job["id"]).count("started") == 1


async def test_a_resume_waits_for_a_hold_under_way_and_releases_it(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, sql_engine: Engine, redis_conn: Redis
) -> None:
    job = (await client.post("/jobs", json={"task": "echo"})).json()
    await admin.post("/queues/default/pause")
    redis_conn.delete(broker.queue("default", redis_conn).key)  # popped by a worker

    with sql_engine.connect() as conn, conn.begin():  # that worker's refused claim
        assert ledger.claim(conn, job["id"], "w", 30) is None
        assert queues.hold_if_paused(conn, uuid.UUID(job["id"])) is queues.Pause.HELD
        resume = asyncio.create_task(admin.post("/queues/default/resume"))
        for _ in range(100):  # the resume waits for the hold's commit
            await asyncio.sleep(0.05)
            with sql_engine.connect() as other:
                if other.execute(WAITING_FOR_A_LOCK).scalar():
                    break
        else:
            raise AssertionError("the resume did not wait for the hold")

    assert (await resume).json()["in_redis"] == 1
    job = (await client.get(f"/jobs/{job['id']}")).json()
    assert job["status"] == "queued" and job["held"] is False
    events = (await client.get(f"/jobs/{job['id']}/events")).json()
    assert [e["detail"].get("held") or e["detail"].get("released") for e in events[1:]] == [
        "queue 'default' paused",
        "queue 'default' resumed",
    ]


def _pop_and_admit(settings: Settings, redis_conn: Redis, job_id: str) -> None:
    """As a worker that popped the job before it saw its queue's pause: the claim is
    refused, and the job leaves Redis."""
    assert redis_conn.lpop(broker.queue("default", redis_conn).key) == job_id.encode()
    writer = LedgerWriter(settings)
    try:
        popped = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
        assert admission.admit(writer, popped, "w", settings) is None
    finally:
        writer.dispose()
    broker.forget(redis_conn, job_id, "default", settings.result_ttl_s)


KEYED = {"task": "echo", "concurrency_key": "k", "max_concurrency": 1}
PAUSED = {"by": "worker", "held": "queue 'default' paused"}


async def test_a_keyed_job_a_pause_held_waits_for_the_resume_which_releases_it(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    settings: Settings,
    sql_engine: Engine,
    redis_conn: Redis,
    ledger_rows: Ledger,
) -> None:
    job = (await client.post("/jobs", json=KEYED)).json()
    await admin.post("/queues/default/pause")
    _pop_and_admit(settings, redis_conn, job["id"])
    assert ledger_rows.events(job["id"])[-1]["detail"] == PAUSED

    # its key has room, but its queue is paused: neither the key's release nor the
    # reconciler hands it to Redis
    assert run_reconcile_pass(settings).released == 0
    with sql_engine.begin() as conn:
        assert concurrency.release_fitting(conn, "k", "worker") == []
    assert (await client.get(f"/jobs/{job['id']}")).json()["held"] is True
    assert broker.queue("default", redis_conn).count == 0

    resumed = (await admin.post("/queues/default/resume")).json()
    assert resumed["in_redis"] == 1
    assert ledger_rows.events(job["id"])[-1]["detail"] == {
        "by": "client",
        "released": "queue 'default' resumed",
    }
    run_worker_burst(settings)
    assert ledger_rows.statuses(job["id"]) == ["queued", "queued", "queued", "started", "finished"]


async def test_a_keyed_job_a_pause_held_stays_held_for_its_key_when_it_has_no_room(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    settings: Settings,
    sql_engine: Engine,
    redis_conn: Redis,
    ledger_rows: Ledger,
) -> None:
    first = (await client.post("/jobs", json=KEYED)).json()
    second = (await client.post("/jobs", json=KEYED)).json()
    with sql_engine.begin() as conn:  # a worker elsewhere runs the first one
        assert redis_conn.lpop(broker.queue("default", redis_conn).key) == first["id"].encode()
        sql.run(conn, sql.query("lock_concurrency_key"), key="k")
        assert ledger.claim(conn, first["id"], "elsewhere", 30, locked_key="k") is not None
    await admin.post("/queues/default/pause")
    _pop_and_admit(settings, redis_conn, second["id"])
    assert ledger_rows.events(second["id"])[-1]["detail"] == PAUSED

    resumed = (await admin.post("/queues/default/resume")).json()
    assert resumed["in_redis"] == 0  # its key has no room: held on, for its key
    assert (await client.get(f"/jobs/{second['id']}")).json()["held"] is True
    assert ledger_rows.events(second["id"])[-1]["detail"] == {
        "by": "client",
        "held": "queue 'default' resumed; concurrency key at its limit",
    }
    assert run_reconcile_pass(settings).released == 0

    with sql_engine.begin() as conn:  # the first one ends: its key's release hands it back
        ledger.finish(conn, first["id"], 1, "done")
        assert [r.id for r in concurrency.release_fitting(conn, "k", "worker")] == [
            uuid.UUID(second["id"])
        ]
    assert ledger_rows.events(second["id"])[-1]["detail"] == {
        "by": "worker",
        "released": "concurrency key 'k' has room",
    }


async def test_a_keyed_job_whose_queue_was_resumed_since_its_claim_is_claimed_again(
    client: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    sql_engine: Engine,
    redis_conn: Redis,
    ledger_rows: Ledger,
) -> None:
    job = (await client.post("/jobs", json=KEYED)).json()
    await admin.post("/queues/default/pause")
    redis_conn.delete(broker.queue("default", redis_conn).key)  # popped by a worker

    with sql_engine.connect() as conn, conn.begin():  # that worker's claim, under the key
        sql.run(conn, sql.query("lock_concurrency_key"), key="k")
        job_id = uuid.UUID(job["id"])
        assert ledger.claim(conn, job_id, "w", 30, "t", locked_key="k") is None  # paused
        assert (await admin.post("/queues/default/resume")).status_code == 200
        row = admission._hold_or_claim_again(conn, job_id, "k", "w", 30, "t")
        assert row is not None and row.status == "started"

    assert [e["detail"].get("held") for e in ledger_rows.events(job["id"])] == [None, None]


WAITING_FOR_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


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
