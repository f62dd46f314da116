"""`GET /jobs/{id}` answered by the lean handler (`service.api.fast_poll`) is the same
answer the documented route gives: body, ETag, 304, 404, 503, headers and metrics."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from service import errors
from service.api import deps
from service.settings import Settings
from tests.support import Ledger, make_key, run_worker_burst


@asynccontextmanager
async def serving(settings: Settings, key: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    from service.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.watcher.listening.wait(), 10)  # keys may be cached
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Bearer {key}"},
        ) as http:
            yield app, http


@pytest.fixture
async def api(settings: Settings, api_key: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serving(settings, api_key) as served:
        yield served


def routed_only(app: FastAPI) -> None:
    """From here on, a request that reaches FastAPI's router is refused: what still
    answers 200 was answered by the lean handler."""

    async def refuse() -> None:
        raise errors.Unauthenticated("reached the router")

    app.dependency_overrides[deps.current_client] = refuse


def same_answer(lean: httpx.Response, routed: httpx.Response) -> None:
    assert lean.status_code == routed.status_code
    assert lean.content == routed.content
    for header in ("etag", "content-type", "content-length", "x-content-type-options",
                   "cache-control", "content-security-policy"):  # fmt: skip
        assert lean.headers.get(header) == routed.headers.get(header), header


async def test_a_poll_is_answered_without_the_router_and_as_the_route_answers(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings, ledger_rows: Ledger
) -> None:
    app, http = api
    queued = (await http.post("/jobs", json={"task": "echo", "args": {"value": "é 1e-07"}})).json()
    failed = (await http.post("/jobs", json={"task": "fail"})).json()
    run_worker_burst(settings)
    finished = await http.post("/jobs", json={"task": "echo", "args": {"value": [1.5, None]}})
    job_ids = [queued["id"], failed["id"], finished.json()["id"]]
    for _ in range(100):  # enqueued_at is written a moment after the answer (a new ETag)
        if all(ledger_rows.row(job_id)["enqueued_at"] for job_id in job_ids):  # type: ignore[index]
            break
        await asyncio.sleep(0.02)
    routed = {job_id: await http.get(f"/jobs/{job_id}", params={"wait": 0}) for job_id in job_ids}

    routed_only(app)
    for job_id in job_ids:
        lean = await http.get(f"/jobs/{job_id}")
        same_answer(lean, routed[job_id])
        assert lean.status_code == 200
    assert (await http.get(f"/jobs/{queued['id']}", params={"wait": 0})).status_code == 401
    assert routed[failed["id"]].json()["error"]["type"] == "TaskFailed"


async def test_a_lean_poll_gives_304_for_its_etag_and_404_for_a_job_not_yours(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings, sql_engine: Engine
) -> None:
    app, http = api
    job_id = (await http.post("/jobs", json={"task": "echo"})).json()["id"]
    run_worker_burst(settings)  # final: its ETag stays
    tag = (await http.get(f"/jobs/{job_id}")).headers["etag"]
    routed_304 = await http.get(
        f"/jobs/{job_id}", params={"wait": 0}, headers={"If-None-Match": tag}
    )
    async with serving(settings, make_key(sql_engine, "other")) as (other_app, other):
        await other.get("/tasks")  # the other key, cached
        routed_404 = await other.get(f"/jobs/{job_id}", params={"wait": 0})
        routed_only(other_app)
        lean_404 = await other.get(f"/jobs/{job_id}")

    routed_only(app)
    lean_304 = await http.get(f"/jobs/{job_id}", headers={"If-None-Match": f'"x", {tag}'})
    assert lean_304.status_code == 304 and lean_304.content == b""
    assert lean_304.headers["etag"] == tag == routed_304.headers["etag"]
    assert routed_304.status_code == 304
    assert lean_404.status_code == 404
    assert lean_404.json() == {"detail": f"no job with id {job_id}"}
    same_answer(lean_404, routed_404)
    changed = await http.get(f"/jobs/{job_id}", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.json()["id"] == job_id


async def test_what_the_lean_handler_does_not_know_goes_to_the_route(
    api: tuple[FastAPI, httpx.AsyncClient], settings: Settings, sql_engine: Engine
) -> None:
    _, http = api
    job_id = (await http.post("/jobs", json={"task": "echo"})).json()["id"]
    fresh_key = make_key(sql_engine, "fresh")  # not cached yet: the route looks it up

    first = await http.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {fresh_key}"})
    no_key = await http.get(f"/jobs/{job_id}", headers={"Authorization": ""})
    upper = await http.get(f"/jobs/{job_id.upper()}")
    long_tags = await http.get(f"/jobs/{job_id}", headers={"If-None-Match": "x" * 201})

    assert first.status_code == 404  # "fresh" is another client
    assert no_key.status_code == 401
    assert upper.status_code == 200 and upper.json()["id"] == job_id
    assert long_tags.status_code == 422


async def test_a_lean_poll_counts_in_the_metrics_under_the_route(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = api
    job_id = (await http.post("/jobs", json={"task": "echo"})).json()["id"]

    def polls() -> float:
        from service import metrics

        sample: Any = metrics.HTTP_REQUESTS.labels("GET", "/jobs/{job_id}", "200")
        return float(sample._value.get())

    await http.get(f"/jobs/{job_id}")  # caches the key
    before = polls()
    routed_only(app)
    for _ in range(3):
        assert (await http.get(f"/jobs/{job_id}")).status_code == 200
    assert polls() == before + 3


async def test_a_lean_poll_with_the_ledger_unreachable_is_a_503(
    settings: Settings, api_key: str
) -> None:
    tight = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_connect_timeout_s": 0.5}
    )
    async with serving(tight, api_key) as (app, http):
        job_id = (await http.post("/jobs", json={"task": "echo"})).json()["id"]
        routed_only(app)
        async with app.state.engine.connect() as held:
            await held.exec_driver_sql("SELECT 1")  # the pool's one connection, taken
            r = await http.get(f"/jobs/{job_id}")
        after = await http.get(f"/jobs/{job_id}")

    assert r.status_code == 503, r.text
    assert "unreachable" in r.json()["detail"]
    assert r.headers["retry-after"] == "5"
    assert after.status_code == 200
