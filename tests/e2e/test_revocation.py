"""A revoked key stops working in bounded time, even when the notification that should
tell the API is lost on a link gone quiet; its open streams end too."""

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine, make_url

from service import keys
from service.settings import Settings
from tests.e2e.conftest import Stack
from tests.faults.proxy import Proxy

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def _revoke(engine: Engine, name: str) -> float:
    with engine.begin() as conn:
        keys.revoke(conn, name)
    return time.monotonic()


def test_a_revoked_key_is_refused_even_if_its_notification_is_lost(
    make_stack: Callable[..., Stack], settings: Settings, sql_engine: Engine
) -> None:
    url = make_url(str(settings.database_url))
    proxy = Proxy(url.port or 5432)
    try:
        listen_url = url.set(port=proxy.port).render_as_string(hide_password=False)
        stack = make_stack(JOBS_LISTEN_DATABASE_URL=listen_url, JOBS_KEY_CACHE_S="2")
        assert stack.http.get("/tasks").status_code == 200  # the key is cached now

        proxy.freeze()  # the listener's link goes quiet: no NOTIFY will arrive
        revoked_at = _revoke(sql_engine, "tester")
        while (r := stack.http.get("/tasks")).status_code == 200:
            assert time.monotonic() - revoked_at < 2 + 1.5, "the revoked key still works"
            time.sleep(0.05)
        assert r.status_code == 401
    finally:
        proxy.close()


def test_the_stream_of_a_revoked_key_ends(
    make_stack: Callable[..., Stack], sql_engine: Engine
) -> None:
    stack = make_stack(JOBS_KEY_CACHE_S="1")
    job_id = stack.submit("echo", value=1)  # no worker: the job stays queued
    with stack.http.stream("GET", f"/jobs/{job_id}/stream", timeout=30) as events:
        lines = events.iter_lines()
        assert next(lines) == f"id: {stack.http.get(f'/jobs/{job_id}/events').json()[0]['id']}"
        revoked_at = _revoke(sql_engine, "tester")
        for line in lines:
            if line == "event: revoked":
                break
        else:
            pytest.fail("the stream ended without saying why")
    assert time.monotonic() - revoked_at < 1 + 1.5


def test_the_long_poll_of_a_revoked_key_ends(
    make_stack: Callable[..., Stack], sql_engine: Engine
) -> None:
    stack = make_stack(JOBS_KEY_CACHE_S="1")
    job_id = stack.submit("echo", value=1)  # no worker: the job stays queued
    started = time.monotonic()
    with httpx.Client(base_url=str(stack.http.base_url), headers=stack.http.headers) as poll:
        revoker = threading.Timer(1.0, _revoke, args=(sql_engine, "tester"))
        revoker.start()
        r = poll.get(f"/jobs/{job_id}", params={"wait": 30}, timeout=40)
        revoker.join()
    assert r.status_code == 401
    assert time.monotonic() - started < 1 + 1 + 1.5
