"""Watching jobs over HTTP with real processes: long-polls, ETags and Server-Sent Events,
all woken by PostgreSQL LISTEN/NOTIFY."""

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from service.settings import Settings
from tests.e2e.conftest import Stack, wait_until
from tests.support import make_key

pytestmark = pytest.mark.e2e


def test_long_poll_answers_when_the_job_finishes(stack: Stack) -> None:
    job_id = stack.submit("sleep", seconds=1)
    stack.worker("w", simple=True)

    started = time.monotonic()
    r = stack.http.get(f"/jobs/{job_id}", params={"wait": 20}, timeout=30)
    waited = time.monotonic() - started

    assert r.status_code == 200
    assert r.json()["status"] == "finished"
    assert r.json()["result"] == 1
    assert waited < 10  # well before the 20 s it was allowed


def test_long_poll_gives_the_current_state_after_wait_seconds(stack: Stack) -> None:
    job_id = stack.submit("echo", value=1)  # no worker: it stays queued

    started = time.monotonic()
    r = stack.http.get(f"/jobs/{job_id}", params={"wait": 1.5})

    assert r.status_code == 200
    assert r.json()["status"] == "queued"
    assert time.monotonic() - started >= 1.5


def test_wait_over_60_seconds_is_refused(stack: Stack) -> None:
    job_id = stack.submit("echo", value=1)
    r = stack.http.get(f"/jobs/{job_id}", params={"wait": 61})
    assert r.status_code == 422
    assert "wait" in r.text


def test_etag_gives_304_until_the_job_changes(stack: Stack) -> None:
    job_id = stack.submit("echo", value=1)
    # the ledger records enqueued_at a moment after the submit answers: a change of its own
    wait_until(lambda: stack.job(job_id)["enqueued_at"] is not None, 5, "enqueued_at")
    first = stack.http.get(f"/jobs/{job_id}")
    tag = first.headers["ETag"]

    same = stack.http.get(f"/jobs/{job_id}", headers={"If-None-Match": tag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["ETag"] == tag

    stack.worker("w", simple=True)
    done = stack.http.get(f"/jobs/{job_id}", params={"wait": 20}, headers={"If-None-Match": tag})
    assert done.status_code == 200
    assert done.json()["status"] == "finished"
    assert done.headers["ETag"] != tag


def _read_sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name, data = [], "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            events.append((name, json.loads(data)))
            name = ""
    return events


def test_stream_sends_each_transition_and_progress_then_the_final_job(stack: Stack) -> None:
    job_id = stack.submit("sleep", seconds=2.5)  # reports progress each second
    stack.worker("w", simple=True)

    with stack.http.stream("GET", f"/jobs/{job_id}/stream", timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _read_sse(r)

    names = [name for name, _ in events]
    first_progress = names.index("progress")
    assert names[:2] == ["queued", "started"]
    assert first_progress == 2
    assert names[-2:] == ["finished", "job"]
    assert set(names[first_progress:-2]) == {"progress"}
    assert 0 < events[first_progress][1]["value"] <= 1
    assert events[-1][1]["status"] == "finished"
    assert events[-1][1]["result"] == 2.5


def test_stream_of_a_final_job_replays_its_history_and_closes(stack: Stack) -> None:
    job_id = stack.submit("fail", message="no")
    stack.worker("w", simple=True)
    stack.wait(job_id)

    with stack.http.stream("GET", f"/jobs/{job_id}/stream") as r:
        names = [name for name, _ in _read_sse(r)]
    assert names == ["queued", "started", "failed", "job"]

    resumed = stack.http.get(
        f"/jobs/{job_id}/stream", headers={"Last-Event-ID": str(_event_ids(stack, job_id)[1])}
    )
    assert [line[7:] for line in resumed.text.splitlines() if line.startswith("event: ")] == [
        "failed",
        "job",
    ]


def _event_ids(stack: Stack, job_id: str) -> list[int]:
    return [e["id"] for e in stack.http.get(f"/jobs/{job_id}/events").json()]


def test_stream_of_another_clients_job_is_404(stack: Stack, sql_engine: Engine) -> None:
    from tests.support import make_key

    job_id = stack.submit("echo", value=1)
    other = make_key(sql_engine, "other")
    r = stack.http.get(f"/jobs/{job_id}/stream", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404
    anonymous = stack.http.get(f"/jobs/{job_id}/stream", headers={"Authorization": ""})
    assert anonymous.status_code == 401


@pytest.mark.slow
def test_500_concurrent_long_polls_return_within_a_second_of_their_jobs(
    stack: Stack, sql_engine: Engine, settings: Settings
) -> None:
    """One API process with the default pool: 500 waiting clients hold no connection, and
    each one hears of its job within a second of the worker finishing it."""
    n = 500
    r = stack.http.post("/jobs/batch", json={"jobs": [{"task": "echo", "args": {"value": 1}}] * n})
    assert r.status_code == 202, r.text
    ids = [job["id"] for job in r.json()["jobs"]]
    key = stack.http.headers["Authorization"]

    port = stack.port
    pool = settings.db_pool_size + settings.db_max_overflow

    async def poll(job_id: str) -> tuple[int, dict[str, Any], datetime]:
        # a plain HTTP/1.1 exchange per poll: the client side stays cheap at 500 connections
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /jobs/{job_id}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {key}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await reader.read()
        received = datetime.now(UTC)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body), received

    def api_backends() -> tuple[int, int]:
        """The API's pooled connections to PostgreSQL: all of them, and those not idle."""
        with sql_engine.connect() as conn:
            total, busy = conn.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE state NOT LIKE 'idle%')"
                    " FROM pg_stat_activity WHERE application_name = 'jobsvc-api'"
                    " AND datname = current_database()"  # not another test run's API
                )
            ).one()
        return int(total), int(busy)

    async def poll_all() -> list[tuple[int, dict[str, Any], datetime]]:
        polls = [asyncio.create_task(poll(job_id)) for job_id in ids]
        await asyncio.sleep(3)  # every poll is waiting
        assert not any(p.done() for p in polls)
        total, busy = api_backends()
        assert total <= pool  # the pool's connections at most, not one per waiter
        assert busy == 0  # and none of them in use while the 500 wait
        stack.worker("w", simple=True)
        return await asyncio.gather(*polls)

    results = asyncio.run(poll_all())

    lags = []
    for status, job, received in results:
        assert status == 200, job
        assert job["status"] == "finished"
        lags.append((received - datetime.fromisoformat(job["finished_at"])).total_seconds())
    lags.sort()
    p99, slowest = lags[int(n * 0.99) - 1], lags[-1]
    assert p99 < 1.0, f"p99 {p99:.3f} s; median {lags[n // 2]:.3f} s"
    assert slowest < 2.0, f"slowest {slowest:.3f} s"


def test_streams_are_capped_per_client_and_in_lifetime(
    make_stack: Callable[..., Stack], sql_engine: Engine
) -> None:
    stack = make_stack(JOBS_STREAMS_PER_CLIENT="2", JOBS_STREAM_MAX_S="1.5")
    job_id = stack.submit("echo", value=1)  # no worker: it stays queued
    url = f"/jobs/{job_id}/stream"
    queued_id = _event_ids(stack, job_id)[0]

    with stack.http.stream("GET", url) as first, stack.http.stream("GET", url) as second:
        assert (first.status_code, second.status_code) == (200, 200)
        third = stack.http.get(url)
        assert third.status_code == 429, third.text
        assert "2 streams of yours are open already" in third.json()["detail"]
        other = make_key(sql_engine, "other-watcher")
        theirs = stack.http.get(
            f"/jobs/{other_job(stack, other)}/stream",
            headers={"Authorization": f"Bearer {other}"},
            timeout=10,
        )
        assert theirs.status_code == 200  # the cap is per client
        lines = list(first.iter_lines())  # ends by itself after JOBS_STREAM_MAX_S

    assert [line for line in lines if line.startswith("event: ")] == [
        "event: queued",
        "event: reconnect",
    ]
    assert lines.count(f"id: {queued_id}") == 2  # the reconnect carries the last event's id
    again = stack.http.get(url, headers={"Last-Event-ID": str(queued_id)}, timeout=10)
    assert again.status_code == 200  # the slots were given back
    assert "event: queued" not in again.text and "event: reconnect" in again.text


def other_job(stack: Stack, key: str) -> str:
    r = stack.http.post(
        "/jobs",
        json={"task": "echo", "args": {"value": 2}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id
