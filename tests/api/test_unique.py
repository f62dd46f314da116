"""Unique jobs: a submit that repeats a recent job of the same key gets that job back."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from service.settings import Settings
from tests.support import Ledger, run_worker_burst


async def _post(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/jobs", json={"task": "echo", **body})


def _age(engine: Engine, job_id: str, seconds: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET created_at = created_at - make_interval(secs => :s) WHERE id = :id"
            ),
            {"s": seconds, "id": job_id},
        )


async def test_a_repeat_within_the_window_is_the_first_job(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    first = await _post(client, args={"value": 1}, unique_for_s=60)
    again = await _post(client, args={"value": 1}, unique_for_s=60)
    other = await _post(client, args={"value": 2}, unique_for_s=60)

    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["unique_key"].startswith("echo:")
    assert other.status_code == 202  # other args: another key
    assert ledger_rows.count() == 2


async def test_the_window_and_the_statuses_decide(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    first = (await _post(client, args={"value": 1}, unique_for_s=60)).json()
    _age(sql_engine, first["id"], 61)
    late = await _post(client, args={"value": 1}, unique_for_s=60)
    assert late.status_code == 202  # the first is older than the window

    run_worker_burst(settings)  # both finished
    after = await _post(client, args={"value": 1}, unique_for_s=60)
    assert after.status_code == 202  # a finished job does not count by default
    counted = await _post(
        client, args={"value": 1}, unique_for_s=60, unique_states=["queued", "finished"]
    )
    assert counted.status_code == 200 and counted.json()["id"] == after.json()["id"]
    assert ledger_rows.count() == 3


async def test_an_explicit_key_and_a_task_default(client: httpx.AsyncClient) -> None:
    a = await _post(client, args={"value": 1}, unique_for_s=60, unique_key="nightly")
    b = await _post(client, args={"value": 2}, unique_for_s=60, unique_key="nightly")
    assert b.status_code == 200 and b.json()["id"] == a.json()["id"]


@pytest.mark.usefixtures("test_tasks")
async def test_a_task_may_make_its_jobs_unique(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    a = await client.post("/jobs", json={"task": "sync_customer", "args": {"customer": 42}})
    b = await client.post("/jobs", json={"task": "sync_customer", "args": {"customer": 42}})

    assert (a.status_code, b.status_code) == (202, 200)
    assert b.json()["id"] == a.json()["id"] and ledger_rows.count() == 1


async def test_twenty_concurrent_submits_give_one_job(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    answers = await asyncio.gather(
        *(_post(client, args={"value": "once"}, unique_for_s=60) for _ in range(20))
    )

    assert sorted(r.status_code for r in answers) == [200] * 19 + [202]
    assert len({r.json()["id"] for r in answers}) == 1
    assert ledger_rows.count() == 1


async def test_a_batch_repeating_a_key_has_one_job_of_it(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    batch = {
        "jobs": [
            {"ref": "a", "task": "echo", "args": {"value": 1}, "unique_for_s": 60},
            {"ref": "b", "task": "echo", "args": {"value": 1}, "unique_for_s": 60},
            {"task": "echo", "depends_on": ["b"]},
        ]
    }
    r = await client.post("/jobs/batch", json=batch)

    assert r.status_code == 202, r.text
    a, b, child = r.json()["jobs"]
    assert a["id"] == b["id"] and child["depends_on"] == [a["id"]]
    assert ledger_rows.count() == 2


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"unique_key": "k"}, "need unique_for_s"),
        ({"unique_states": ["queued"]}, "need unique_for_s"),
        ({"unique_for_s": 10**9}, "over the limit"),
        ({"unique_for_s": 0}, "greater than 0"),
        ({"unique_for_s": 5, "unique_states": ["lost"]}, "unique_states"),
    ],
)
async def test_bad_unique_options_are_422(
    client: httpx.AsyncClient, ledger_rows: Ledger, body: dict[str, Any], needle: str
) -> None:
    r = await _post(client, **body)

    assert r.status_code == 422 and needle in r.text
    assert ledger_rows.count() == 0
