"""`/jobs` through HTTP, in-process: submit, read, list, cancel, and every bad input."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from service.settings import Settings
from tests.support import Ledger, run_worker_burst


async def submit(client: httpx.AsyncClient, task: str, args: Any = None, **extra: Any) -> Any:
    body = {"task": task, **({"args": args} if args is not None else {}), **extra}
    return await client.post("/jobs", json=body)


async def test_submit_records_then_enqueues(
    client: httpx.AsyncClient, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    r = await submit(client, "echo", {"value": {"n": 1}}, meta={"order": "A-1"})

    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["attempt"] == 0
    assert job["enqueued_at"] is not None
    assert job["meta"] == {"order": "A-1"}
    row = ledger_rows.row(job["id"])
    assert row is not None
    assert row["status"] == "queued"
    assert row["args"] == {"value": {"n": 1}}
    assert ledger_rows.statuses(job["id"]) == ["queued"]
    for _ in range(100):  # enqueued_at is written a moment after the answer, off its path
        if (row := ledger_rows.row(job["id"])) and row["enqueued_at"] is not None:
            break
        await asyncio.sleep(0.01)
    assert row["enqueued_at"].isoformat() == job["enqueued_at"].replace("Z", "+00:00")

    rq_job = Job.fetch(job["id"], connection=redis_conn, serializer=JSONSerializer)
    assert rq_job.func_name == "jobs.builtin.echo"
    assert rq_job.kwargs == {"value": {"n": 1}}
    assert rq_job.origin == "default"
    assert rq_job.timeout == 30
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [job["id"].encode()]


async def test_submit_fills_in_arg_defaults_and_timeout_override(
    client: httpx.AsyncClient, redis_conn: Redis
) -> None:
    r = await submit(client, "fail", timeout_s=7)

    assert r.status_code == 202
    assert r.json()["args"] == {"message": "failed on purpose"}
    assert r.json()["timeout_s"] == 7
    rq_job = Job.fetch(r.json()["id"], connection=redis_conn, serializer=JSONSerializer)
    assert rq_job.timeout == 7


async def test_get_returns_the_job_as_the_worker_left_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    job = (await submit(client, "echo", {"value": [1, "two"]})).json()
    run_worker_burst(settings)

    r = await client.get(f"/jobs/{job['id']}")

    assert r.status_code == 200
    got = r.json()
    assert got["status"] == "finished"
    assert got["result"] == [1, "two"]
    assert got["attempt"] == 1
    assert got["started_at"] <= got["finished_at"]
    expected = {
        "id", "task", "queue", "status", "args", "result", "error", "attempt", "max_attempts",
        "timeout_s", "progress", "meta", "created_at", "enqueued_at", "started_at",
        "finished_at", "updated_at", "run_at", "callback_url", "depends_on", "pending_parents",
        "on_parent_failure", "unique_key", "concurrency_key", "max_concurrency", "held",
        "throttled", "priority", "parked",
    }  # fmt: skip
    assert set(got) == expected


BAD_SUBMITS = {
    "unknown-task": (
        {"task": "emial"},
        "unknown task 'emial'; known tasks: call_webhook, cleanup, echo, fail, generate_report,",
    ),
    "wrong-type": ({"task": "sleep", "args": {"seconds": "abc"}}, "valid number"),
    "missing-field": ({"task": "sleep", "args": {}}, "Field required"),
    "extra-field": ({"task": "echo", "args": {"value": 1, "bogus": 2}}, "Extra inputs"),
    "args-not-object": ({"task": "echo", "args": [1, 2]}, "valid dictionary"),
    "missing-task": ({"args": {}}, "Field required"),
    "unknown-option": ({"task": "echo", "colour": "red"}, "Extra inputs"),
    "unknown-queue": (
        {"task": "echo", "queue": "nope"},
        "unknown queue 'nope'; known queues: analytics, callbacks, default, email, images, "
        "reports, webhooks",
    ),
    "timeout-over-cap": ({"task": "echo", "timeout_s": 999_999}, "over the limit of 3600"),
    "timeout-zero": ({"task": "echo", "timeout_s": 0}, "greater than or equal to 1"),
    "nul-in-args": ({"task": "echo", "args": {"value": ["ok", "a\x00b"]}}, "may not contain NUL"),
    "nul-in-meta-key": ({"task": "echo", "meta": {"k\x00": 1}}, "may not contain NUL"),
    "negative-sleep": ({"task": "sleep", "args": {"seconds": -1}}, "greater than or equal to 0"),
}


@pytest.mark.parametrize(("body", "message"), BAD_SUBMITS.values(), ids=BAD_SUBMITS.keys())
async def test_bad_submit_is_422_and_records_nothing(
    client: httpx.AsyncClient,
    ledger_rows: Ledger,
    redis_conn: Redis,
    body: dict[str, Any],
    message: str,
) -> None:
    r = await client.post("/jobs", json=body)

    assert r.status_code == 422
    assert message in r.text
    assert ledger_rows.count() == 0
    assert redis_conn.keys("rq:job:*") == []


@pytest.mark.parametrize(
    "raw",
    [b'{"task": "echo", "args": ', b"not json", b"[1, 2]", b""],
    ids=["truncated", "not-json", "array", "empty"],
)
async def test_malformed_body_is_422(
    client: httpx.AsyncClient, ledger_rows: Ledger, raw: bytes
) -> None:
    r = await client.post("/jobs", content=raw, headers={"content-type": "application/json"})

    assert r.status_code == 422
    assert r.json()["detail"]
    assert ledger_rows.count() == 0


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    r = await client.get(f"/jobs/{missing}")
    assert r.status_code == 404
    assert r.json() == {"detail": f"no job with id {missing}"}

    r = await client.get("/jobs/not-a-uuid")
    assert r.status_code == 422
    assert "valid UUID" in r.text

    assert (await client.post(f"/jobs/{missing}/cancel")).status_code == 404
    assert (await client.get(f"/jobs/{missing}/events")).status_code == 404


async def test_cancel_queued_job(
    client: httpx.AsyncClient, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    job = (await submit(client, "echo", {"value": 1})).json()

    r = await client.post(f"/jobs/{job['id']}/cancel")

    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    assert r.json()["finished_at"] is not None
    assert ledger_rows.statuses(job["id"]) == ["queued", "canceled"]
    assert redis_conn.lrange("rq:queue:default", 0, -1) == []  # withdrawn from RQ as well

    again = await client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "already canceled" in again.json()["detail"]


async def test_cancel_finished_job_is_409(client: httpx.AsyncClient, settings: Settings) -> None:
    job = (await submit(client, "echo", {"value": 1})).json()
    run_worker_burst(settings)

    r = await client.post(f"/jobs/{job['id']}/cancel")

    assert r.status_code == 409
    assert "already finished" in r.json()["detail"]
    assert (await client.get(f"/jobs/{job['id']}")).json()["status"] == "finished"


async def test_events_list_transitions_oldest_first(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    job = (await submit(client, "fail", {"message": "nope"})).json()
    run_worker_burst(settings)

    events = (await client.get(f"/jobs/{job['id']}/events")).json()

    assert [e["status"] for e in events] == ["queued", "started", "failed"]
    assert [e["detail"]["by"] for e in events] == ["api", "worker", "worker"]
    assert [e["attempt"] for e in events] == [0, 1, 1]
    assert events[2]["detail"]["error"] == {"type": "TaskFailed", "message": "nope"}
    assert events[1]["worker"]
    assert events[1]["worker"] == events[2]["worker"]


async def test_list_filters_and_pages_without_overlap(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    echo_ids = [(await submit(client, "echo", {"value": i})).json()["id"] for i in range(7)]
    fail_ids = [(await submit(client, "fail")).json()["id"] for _ in range(3)]
    run_worker_burst(settings)
    queued = [(await submit(client, "echo", {"value": "later"})).json()["id"] for _ in range(2)]

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, "status": "finished", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/jobs", params=params)).json()
        assert all(item["status"] == "finished" for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(echo_ids))  # newest first, each once

    failed = (await client.get("/jobs", params={"task": "fail"})).json()
    assert {i["id"] for i in failed["items"]} == set(fail_ids)
    assert failed["next_cursor"] is None
    waiting = (await client.get("/jobs", params={"status": "queued"})).json()
    assert {i["id"] for i in waiting["items"]} == set(queued)
    everything = (await client.get("/jobs", params={"limit": 500})).json()
    assert len(everything["items"]) == 12


async def test_list_time_window(client: httpx.AsyncClient) -> None:
    first = (await submit(client, "echo", {"value": 1})).json()
    second = (await submit(client, "echo", {"value": 2})).json()

    after = (await client.get("/jobs", params={"created_after": first["created_at"]})).json()
    before = (await client.get("/jobs", params={"created_before": second["created_at"]})).json()

    assert [i["id"] for i in after["items"]] == [second["id"]]
    assert [i["id"] for i in before["items"]] == [first["id"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 501}, "over the maximum of 500"),
        ({"limit": 0}, "greater than or equal to 1"),
        (
            {"status": "done"},
            "'queued', 'scheduled', 'started', 'finished', 'failed' or 'canceled'",
        ),
        ({"cursor": "garbage!"}, "cursor is not one this service issued"),
        ({"created_after": "yesterday"}, "valid datetime"),
    ],
)
async def test_list_rejects_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, Any], message: str
) -> None:
    r = await client.get("/jobs", params=params)

    assert r.status_code == 422
    assert message in r.text


async def test_list_filters_with_a_nul_character_are_422(client: httpx.AsyncClient) -> None:
    for name in ("task", "queue"):
        r = await client.get("/jobs", params={name: "echo\x00x", "status": "started"})
        assert r.status_code == 422
        assert "NUL" in r.text
