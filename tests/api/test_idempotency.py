"""`Idempotency-Key` on `POST /jobs`: one job per key, whoever asks and however often."""

import asyncio

import httpx
from redis import Redis

from tests.support import Ledger

BODY = {"task": "echo", "args": {"value": "charge order 17"}}


async def test_same_key_same_body_returns_the_first_job(
    client: httpx.AsyncClient, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    first = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "order-17"})
    again = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "order-17"})

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == f"/jobs/{first.json()['id']}"
    assert ledger_rows.count() == 1
    assert redis_conn.llen("rq:queue:default") == 1


async def test_same_key_different_body_is_409(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    first = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "order-17"})
    other = {"task": "echo", "args": {"value": "charge order 18"}}

    r = await client.post("/jobs", json=other, headers={"Idempotency-Key": "order-17"})

    assert r.status_code == 409
    assert "Idempotency-Key 'order-17' was already used for a different request" in r.text
    assert first.json()["id"] in r.text
    assert ledger_rows.count() == 1


async def test_concurrent_duplicates_make_one_job(
    client: httpx.AsyncClient, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    replies = await asyncio.gather(
        *(client.post("/jobs", json=BODY, headers={"Idempotency-Key": "race"}) for _ in range(16))
    )

    codes = sorted(r.status_code for r in replies)
    assert codes == [200] * 15 + [202]
    assert len({r.json()["id"] for r in replies}) == 1
    assert ledger_rows.count() == 1
    assert redis_conn.llen("rq:queue:default") == 1


async def test_without_a_key_every_submit_is_a_new_job(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    await client.post("/jobs", json=BODY)
    await client.post("/jobs", json=BODY)
    assert ledger_rows.count() == 2


async def test_key_length_is_limited(client: httpx.AsyncClient, ledger_rows: Ledger) -> None:
    r = await client.post("/jobs", json=BODY, headers={"Idempotency-Key": "k" * 201})
    assert r.status_code == 422
    assert "at most 200 characters" in r.text
    assert ledger_rows.count() == 0
