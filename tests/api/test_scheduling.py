"""`delay_s` and `run_at`: the job waits as `scheduled` until the reconciler releases it."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.support import Ledger


async def test_delay_s_schedules_without_enqueueing(
    client: httpx.AsyncClient, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    before = datetime.now(UTC)
    r = await client.post("/jobs", json={"task": "echo", "args": {"value": 1}, "delay_s": 60})

    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "scheduled" and job["enqueued_at"] is None
    run_at = datetime.fromisoformat(job["run_at"])
    assert before + timedelta(seconds=59) < run_at < before + timedelta(seconds=62)
    assert redis_conn.keys("rq:job:*") == []
    assert ledger_rows.statuses(job["id"]) == ["scheduled"]


async def test_run_at_schedules_and_a_past_run_at_queues_now(client: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    scheduled = (await client.post("/jobs", json={"task": "echo", "run_at": later})).json()
    now = (await client.post("/jobs", json={"task": "echo", "run_at": earlier})).json()

    assert scheduled["status"] == "scheduled"
    assert datetime.fromisoformat(scheduled["run_at"]) == datetime.fromisoformat(later)
    assert now["status"] == "queued" and now["run_at"] is None and now["enqueued_at"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"delay_s": 5, "run_at": "2030-01-01T00:00:00Z"}, "delay_s or run_at, not both"),
        ({"run_at": "2030-01-01T00:00:00"}, "timezone"),
        ({"delay_s": 0}, "greater than 0"),
        ({"delay_s": 10**9}, "delay_s 1e+09 is over the limit of 2.592e+06"),
        ({"run_at": "2999-01-01T00:00:00Z"}, "run_at (seconds from now)"),
        ({"max_attempts": 26}, "max_attempts 26 is over the limit of 25"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"backoff_s": -1}, "greater than or equal to 0"),
        ({"backoff_s": 10**6}, "backoff_s 1e+06 is over the limit of 3600"),
    ],
)
async def test_bad_options_are_422(
    client: httpx.AsyncClient, ledger_rows: Ledger, extra: dict[str, Any], message: str
) -> None:
    r = await client.post("/jobs", json={"task": "echo", **extra})

    assert r.status_code == 422
    assert message in r.text
    assert ledger_rows.count() == 0


async def test_overrides_are_recorded(client: httpx.AsyncClient) -> None:
    r = await client.post("/jobs", json={"task": "fail", "max_attempts": 4, "backoff_s": 0.5})

    job = r.json()
    assert job["max_attempts"] == 4
    tasks = {t["name"]: t for t in (await client.get("/tasks")).json()}
    assert tasks["fail"]["max_attempts"] == 1  # the task's default is untouched
