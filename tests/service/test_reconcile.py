"""The reconciler, one pass at a time, against the real ledger and Redis."""

import asyncio
import threading
import uuid

import httpx
from redis import Redis
from sqlalchemy import Engine, text

from service import ledger
from service.reconcile import Reconciler
from service.settings import Settings
from tests.support import Ledger, run_reconcile_pass, run_worker_burst


def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"redeliver_after_s": 0.2})


async def submit(client: httpx.AsyncClient, task: str = "echo", **extra: object) -> str:
    args = {"seconds": 1} if task == "sleep" else {"value": 1}
    r = await client.post("/jobs", json={"task": task, "args": args, **extra})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


async def test_jobs_lost_from_redis_are_enqueued_again(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    ids = [await submit(client) for _ in range(5)]
    redis_conn.flushdb()
    await asyncio.sleep(0.3)

    repairs = run_reconcile_pass(fast(settings))

    assert repairs.redelivered == 5
    assert sorted(i.decode() for i in redis_conn.lrange("rq:queue:default", 0, -1)) == sorted(ids)
    assert ledger_rows.statuses(ids[0]) == ["queued", "queued"]
    assert ledger_rows.events(ids[0])[1]["detail"] == {"by": "reconciler", "action": "redelivered"}
    run_worker_burst(settings)
    assert ledger_rows.count("status = 'finished' AND attempt = 1") == 5


async def test_jobs_redis_still_holds_are_left_alone(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis
) -> None:
    await submit(client)
    await asyncio.sleep(0.3)

    first = run_reconcile_pass(fast(settings))
    second = run_reconcile_pass(fast(settings))

    assert first.redelivered == 0 and second.redelivered == 0
    assert redis_conn.llen("rq:queue:default") == 1


async def test_a_job_popped_by_a_worker_that_died_is_enqueued_again(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    job_id = await submit(client)
    assert redis_conn.lpop("rq:queue:default") == job_id.encode()  # as a dying BLPOP would
    assert redis_conn.exists(f"rq:job:{job_id}")  # the hash alone does not count
    await asyncio.sleep(0.3)

    assert run_reconcile_pass(fast(settings)).redelivered == 1
    run_worker_burst(settings)
    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "finished"


async def test_a_job_popped_from_under_a_newer_head_is_enqueued_again(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    first = await submit(client)
    await asyncio.sleep(0.3)
    second = await submit(client)
    assert redis_conn.lpop("rq:queue:default") == first.encode()  # a BLPOP, then SIGKILL
    await asyncio.sleep(0.3)

    assert run_reconcile_pass(fast(settings)).redelivered == 1
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [second.encode(), first.encode()]
    assert ledger_rows.statuses(second) == ["queued"]  # still waiting: left alone


async def test_a_job_stranded_in_the_intermediate_list_is_enqueued_again(
    client: httpx.AsyncClient,
    settings: Settings,
    redis_conn: Redis,
    sql_engine: Engine,
    ledger_rows: Ledger,
) -> None:
    job_id = await submit(client)
    popped = "rq:queue:default:intermediate"
    # What a single-queue worker's BLMOVE leaves when the worker dies before the claim.
    assert redis_conn.lmove("rq:queue:default", popped) == job_id.encode()
    await asyncio.sleep(0.3)
    reconciler = Reconciler(fast(settings), sql_engine, redis_conn)

    assert reconciler.run_pass().redelivered == 0  # a live worker might be about to claim it
    await asyncio.sleep(0.3)
    assert reconciler.run_pass().redelivered == 1  # still not started: its worker is gone

    assert redis_conn.llen(popped) == 0
    run_worker_burst(settings)
    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "finished" and row["attempt"] == 1


async def test_a_submit_redis_refused_is_delivered(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    job_id = await submit(client)
    with sql_engine.begin() as conn:  # as if Redis had refused the enqueue
        conn.execute(text("UPDATE jobs SET enqueued_at = NULL WHERE id = :id"), {"id": job_id})
    Redis.from_url(str(settings.redis_url)).flushdb()
    await asyncio.sleep(0.3)

    assert run_reconcile_pass(fast(settings)).redelivered == 1
    row = ledger_rows.row(job_id)
    assert row is not None and row["enqueued_at"] is not None


async def test_expired_lease_is_retried_then_failed_as_lost(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    job_id = uuid.UUID(await submit(client, "sleep", max_attempts=2))

    def claim_and_expire() -> None:
        with sql_engine.begin() as conn:
            assert ledger.claim(conn, job_id, "gone-worker", lease_s=1) is not None
            conn.execute(
                text("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :id"),
                {"id": job_id},
            )

    claim_and_expire()
    first = run_reconcile_pass(settings)
    row = ledger_rows.row(job_id)
    assert first.requeued_lost == 1
    assert row is not None and row["status"] == "queued" and row["error"]["type"] == "lost"

    claim_and_expire()
    second = run_reconcile_pass(settings)
    row = ledger_rows.row(job_id)
    assert second.failed_lost == 1
    assert row is not None and row["status"] == "failed" and row["attempt"] == 2
    assert row["error"]["type"] == "lost" and row["finished_at"] is not None
    assert ledger_rows.statuses(job_id) == [
        "queued", "started", "queued", "started", "failed",
    ]  # fmt: skip
    assert ledger_rows.events(job_id)[2]["detail"]["by"] == "reconciler"


async def test_due_scheduled_jobs_are_released(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    soon = await submit(client, delay_s=0.5)
    later = await submit(client, delay_s=3600)

    assert run_reconcile_pass(settings).released == 0
    await asyncio.sleep(0.6)
    assert run_reconcile_pass(settings).released == 1

    assert redis_conn.lrange("rq:queue:default", 0, -1) == [soon.encode()]
    run_worker_burst(settings)
    assert ledger_rows.statuses(soon) == ["scheduled", "queued", "started", "finished"]
    assert ledger_rows.statuses(later) == ["scheduled"]


async def test_reconcilers_side_by_side_enqueue_each_job_once(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis, sql_engine: Engine
) -> None:
    for _ in range(120):
        await submit(client, delay_s=0.2)
    await asyncio.sleep(0.3)
    small = settings.model_copy(update={"reconcile_batch": 7})
    released: list[int] = []

    def reconcile_until_done() -> None:
        for _ in range(200):
            released.append(run_reconcile_pass(small).released)
            with sql_engine.connect() as conn:
                left = conn.execute(text("SELECT count(*) FROM jobs WHERE status = 'scheduled'"))
                if left.scalar_one() == 0:
                    return

    threads = [threading.Thread(target=reconcile_until_done) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sum(released) == 120
    queued = [i.decode() for i in redis_conn.lrange("rq:queue:default", 0, -1)]
    assert len(queued) == 120 and len(set(queued)) == 120
