"""Submitting while PostgreSQL or Redis is unreachable (nothing listens at the URL)."""

from collections.abc import AsyncIterator

import httpx
import pytest
from redis import Redis
from sqlalchemy import make_url

from service.localservers import free_port
from service.settings import Settings
from tests.support import Ledger, api_client


@pytest.fixture
async def redis_down(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with api_client(dead, api_key) as c:
        yield c


@pytest.fixture
async def database_down(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    url = make_url(str(settings.database_url)).set(host="127.0.0.1", port=free_port())
    dead = settings.model_copy(update={"database_url": url.render_as_string(False)})
    async with api_client(dead, api_key) as c:
        yield c


async def test_redis_down_still_accepts_and_keeps_the_row_queued(
    redis_down: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    r = await redis_down.post("/jobs", json={"task": "echo", "args": {"value": 1}})

    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued"
    assert job["enqueued_at"] is None
    row = ledger_rows.row(job["id"])
    assert row is not None
    assert row["status"] == "queued"
    assert row["enqueued_at"] is None


async def test_redis_down_makes_readyz_503(redis_down: httpx.AsyncClient) -> None:
    r = await redis_down.get("/readyz")

    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["redis"].startswith("unreachable")


async def test_database_down_is_503_and_nothing_is_enqueued(
    database_down: httpx.AsyncClient, redis_conn: Redis
) -> None:
    r = await database_down.post("/jobs", json={"task": "echo", "args": {"value": 1}})

    assert r.status_code == 503
    assert "ledger (PostgreSQL) is unreachable" in r.json()["detail"]
    assert r.headers["retry-after"] == "5"
    assert redis_conn.keys("rq:*") == []

    ready = await database_down.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "ok"
    assert (await database_down.get("/jobs")).status_code == 503
    assert (await database_down.get("/healthz")).status_code == 200
