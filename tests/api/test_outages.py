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


async def test_a_pool_that_stays_busy_is_a_503_not_a_500(
    settings: Settings, api_key: str, ledger_rows: Ledger
) -> None:
    from service.main import create_app

    tight = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_connect_timeout_s": 0.5}
    )
    app = create_app(tight)
    async with app.router.lifespan_context(app), app.state.engine.connect() as held:
        await held.exec_driver_sql("SELECT 1")  # the pool's one connection, taken
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as c:
            r = await c.post("/jobs", json={"task": "echo"})

    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"]
    assert ledger_rows.count() == 0


async def test_readyz_never_shows_a_password(settings: Settings, api_key: str) -> None:
    url = make_url(str(settings.database_url)).set(
        host="127.0.0.1", port=free_port(), username="jobs", password="s3cret-pw"
    )
    dead = settings.model_copy(
        update={
            "database_url": url.render_as_string(hide_password=False),
            "redis_url": f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0",
        }
    )
    async with api_client(dead, api_key) as c:
        r = await c.get("/readyz")

    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("unreachable")
    assert "s3cret-pw" not in r.text
