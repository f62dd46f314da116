"""Concurrency keys through the API and an in-process worker: a job over its key's limit
is held (queued, no attempt spent, out of Redis) and released when a slot frees."""

from typing import Any

import httpx
import pytest
from redis import Redis
from sqlalchemy import Engine

from service import admission, broker, concurrency, ledger, sql
from service.ledger_writer import LedgerWriter
from service.settings import Settings
from tests.support import Ledger, run_reconcile_pass, run_worker_burst


async def _submit(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await client.post("/jobs", json={"task": "echo", **fields})
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    return job


async def test_the_key_is_resolved_from_its_template(client: httpx.AsyncClient) -> None:
    job = await _submit(
        client,
        args={"value": "acme"},
        concurrency_key="{owner}/{task}/{args.value}",
        max_concurrency=2,
    )

    assert job["concurrency_key"] == "tester/echo/acme" and job["max_concurrency"] == 2
    assert job["held"] is False


async def test_a_job_over_the_limit_is_held_then_released(
    client: httpx.AsyncClient,
    settings: Settings,
    sql_engine: Engine,
    redis_conn: Redis,
    ledger_rows: Ledger,
) -> None:
    keyed = {"concurrency_key": "c1", "max_concurrency": 1}
    first = await _submit(client, args={"value": 1}, **keyed)
    second = await _submit(client, args={"value": 2}, **keyed)
    other = await _submit(client, args={"value": 3}, concurrency_key="c2", max_concurrency=1)
    queue = broker.queue("default", redis_conn)
    job = queue.fetch_job(first["id"])
    assert job is not None and job.meta == {"concurrency_key": "c1"}
    writer = LedgerWriter(settings)
    try:
        elsewhere = admission.admit(writer, job, "elsewhere", settings)
    finally:
        writer.dispose()
    assert elsewhere is not None  # a worker elsewhere runs the first one

    run_worker_burst(settings)  # pops the second: over the limit; the other key runs

    assert ledger_rows.row(second["id"])["status"] == "queued"  # type: ignore[index]
    held = (await client.get(f"/jobs/{second['id']}")).json()
    assert held["held"] is True and held["attempt"] == 0
    assert ledger_rows.row(other["id"])["status"] == "finished"  # type: ignore[index]
    assert [e["detail"].get("held") for e in ledger_rows.events(second["id"])][-1]
    assert run_reconcile_pass(settings).released == 0  # no room: still held
    metrics = (await client.get("/metrics")).text
    assert 'jobsvc_jobs_held{queue="default"} 1.0' in metrics

    third = await _submit(client, args={"value": 4}, **keyed)
    run_worker_burst(settings)  # held too; then canceled: no longer held, never released
    assert (await client.get(f"/jobs/{third['id']}")).json()["held"] is True
    assert (await client.post(f"/jobs/{third['id']}/cancel")).json()["held"] is False

    with sql_engine.begin() as conn:  # the first one ends
        ledger.finish(conn, first["id"], 1, "done")
    assert run_reconcile_pass(settings).released == 1
    released = {"by": "reconciler", "released": "concurrency key has room"}
    assert ledger_rows.events(second["id"])[-1]["detail"] == released
    run_worker_burst(settings)
    assert ledger_rows.row(second["id"])["status"] == "finished"  # type: ignore[index]
    assert ledger_rows.row(second["id"])["attempt"] == 1  # type: ignore[index]


async def test_a_job_held_for_its_key_is_not_released_while_its_queue_is_paused(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    keyed = {"concurrency_key": "k", "max_concurrency": 1}
    first = await _submit(client, **keyed)
    second = await _submit(client, **keyed)
    with sql_engine.begin() as conn:  # a worker elsewhere runs the first one
        sql.run(conn, sql.query("lock_concurrency_key"), key="k")
        assert ledger.claim(conn, first["id"], "elsewhere", 30, locked_key="k") is not None
    run_worker_burst(settings)  # pops the second: held for its key
    assert (await client.get(f"/jobs/{second['id']}")).json()["held"] is True

    with sql_engine.begin() as conn:  # the queue is paused; the first one ends
        sql.run(conn, sql.query("set_paused"), name="default", paused=True, by="ops")
        ledger.finish(conn, first["id"], 1, "done")
        assert concurrency.release_fitting(conn, "k", "worker") == []  # its key's release
    assert run_reconcile_pass(settings).released == 0
    assert (await client.get(f"/jobs/{second['id']}")).json()["held"] is True

    with sql_engine.begin() as conn:
        sql.run(conn, sql.query("set_paused"), name="default", paused=False, by="ops")
    assert run_reconcile_pass(settings).released == 1
    run_worker_burst(settings)
    assert ledger_rows.row(second["id"])["status"] == "finished"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"concurrency_key": "c1"}, "needs max_concurrency"),
        ({"max_concurrency": 2}, "needs concurrency_key"),
        ({"concurrency_key": "{args.nope}", "max_concurrency": 1}, "{args.nope}"),
        ({"concurrency_key": "{password}", "max_concurrency": 1}, "{password}"),
        ({"concurrency_key": "c", "max_concurrency": 0}, "greater than or equal to 1"),
    ],
)
async def test_bad_concurrency_options_are_422(
    client: httpx.AsyncClient, ledger_rows: Ledger, fields: dict[str, Any], needle: str
) -> None:
    r = await client.post("/jobs", json={"task": "echo", **fields})

    assert r.status_code == 422 and needle in r.text
    assert ledger_rows.count() == 0
