"""`POST /jobs/batch`: many jobs, all or nothing."""

import httpx
from redis import Redis

from service.settings import Settings
from tests.support import Ledger, run_worker_burst


async def test_a_batch_is_recorded_enqueued_and_run(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    jobs = [{"task": "echo", "args": {"value": i}} for i in range(300)]

    r = await client.post("/jobs/batch", json={"jobs": jobs})

    assert r.status_code == 202
    out = r.json()["jobs"]
    assert [j["args"]["value"] for j in out] == list(range(300))
    assert all(j["status"] == "queued" and j["enqueued_at"] for j in out)
    assert ledger_rows.count() == 300
    assert redis_conn.llen("rq:queue:default") == 300
    run_worker_burst(settings)
    assert ledger_rows.count("status = 'finished'") == 300


async def test_one_bad_job_refuses_the_whole_batch(
    client: httpx.AsyncClient, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    jobs = [
        {"task": "echo"},
        {"task": "emial"},
        {"task": "sleep", "args": {"seconds": "x"}},
        {"task": "echo", "timeout_s": 10**6},
    ]

    r = await client.post("/jobs/batch", json={"jobs": jobs})

    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [d["index"] for d in detail] == [1, 2, 3]
    assert "unknown task 'emial'" in detail[0]["detail"]
    assert detail[1]["detail"][0]["loc"] == ["body", "args", "seconds"]
    assert ledger_rows.count() == 0
    assert redis_conn.keys("rq:*") == []


async def test_batch_idempotency_keys(client: httpx.AsyncClient, ledger_rows: Ledger) -> None:
    first = await client.post(
        "/jobs", json={"task": "echo", "args": {"value": 1}}, headers={"Idempotency-Key": "k1"}
    )
    batch = {
        "jobs": [
            {"task": "echo", "args": {"value": 1}, "idempotency_key": "k1"},
            {"task": "echo", "args": {"value": 2}, "idempotency_key": "k2"},
        ]
    }

    r = await client.post("/jobs/batch", json=batch)
    again = await client.post("/jobs/batch", json=batch)

    assert r.status_code == 202
    assert r.json()["jobs"][0]["id"] == first.json()["id"]
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in r.json()["jobs"]]
    assert ledger_rows.count() == 2
    clash = {
        "jobs": [
            {"task": "echo", "args": {"value": 4}, "idempotency_key": "k3"},  # new
            {"task": "echo", "args": {"value": 3}, "idempotency_key": "k2"},  # reused
        ]
    }
    conflict = await client.post("/jobs/batch", json=clash)
    assert conflict.status_code == 409
    assert ledger_rows.count() == 2  # all or nothing: the new job was not kept either
    repeat = {"jobs": [{"task": "echo", "idempotency_key": "k9"}] * 2}
    assert (await client.post("/jobs/batch", json=repeat)).status_code == 422


async def test_batch_size_is_limited(client: httpx.AsyncClient) -> None:
    r = await client.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 1001})
    assert r.status_code == 422
    assert "at most 1000 items" in r.text
    assert (await client.post("/jobs/batch", json={"jobs": []})).status_code == 422
