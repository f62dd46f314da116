"""Hostile or broken payloads: nothing in Redis is ever unpickled or run on trust."""

import os
import pickle
import uuid
from pathlib import Path

import httpx
import pytest
from redis import Redis

from service.settings import Settings
from tests.support import Ledger, run_worker_burst


class Exploit:
    """Unpickling this touches a file: proof that pickled bytes were trusted."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(redis: Redis, job_id: str, marker: Path) -> None:
    """Write a job hash whose payload is a pickle, and queue its id, as an intruder could."""
    payload = pickle.dumps(("jobs.builtin.echo", None, [Exploit(marker)], {}))
    redis.hset(
        f"rq:job:{job_id}",
        mapping={"data": payload, "origin": "default", "status": "queued", "description": "x"},
    )
    redis.rpush("rq:queue:default", job_id)
    redis.sadd("rq:queues", "rq:queue:default")


async def test_pickled_payload_under_a_ledger_id_is_not_run(
    client: httpx.AsyncClient,
    settings: Settings,
    redis_conn: Redis,
    ledger_rows: Ledger,
    tmp_path: Path,
) -> None:
    job_id = (await client.post("/jobs", json={"task": "echo", "args": {"value": 1}})).json()["id"]
    redis_conn.flushdb()
    marker = tmp_path / "pwned"
    plant_pickle(redis_conn, job_id, marker)

    run_worker_burst(settings)

    assert not marker.exists()
    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "failed"
    assert row["error"]["type"] == "payload_mismatch"
    assert "cannot be decoded as JSON" in row["error"]["message"]
    # the worker goes on to serve the next job
    nxt = (await client.post("/jobs", json={"task": "echo", "args": {"value": 2}})).json()["id"]
    run_worker_burst(settings)
    assert ledger_rows.row(nxt)["status"] == "finished"  # type: ignore[index]


async def test_pickled_payload_under_an_unknown_id_is_not_run(
    client: httpx.AsyncClient,
    settings: Settings,
    redis_conn: Redis,
    ledger_rows: Ledger,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    plant_pickle(redis_conn, str(uuid.uuid4()), marker)

    run_worker_burst(settings)

    assert not marker.exists()
    assert ledger_rows.count() == 0


@pytest.mark.usefixtures("test_tasks")
async def test_a_result_that_is_not_json_fails_clearly(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    r = await client.post("/jobs", json={"task": "set_result", "max_attempts": 3})
    job_id = r.json()["id"]

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "failed" and row["attempt"] == 1  # no retry
    assert row["error"]["type"] == "result_invalid"
    assert (
        "the task's result is not JSON: Object of type set is not JSON serializable"
        in (row["error"]["message"])
    )


CALLED: list[tuple[object, ...]] = []


def intruders_callback(*args: object) -> None:
    """Named by a planted job hash: being called at all is the break-in."""
    CALLED.append(args)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("success_callback_name", f"{__name__}.intruders_callback", "success callback"),
        ("failure_callback_name", f"{__name__}.intruders_callback", "failure callback"),
        ("stopped_callback_name", f"{__name__}.intruders_callback", "stopped callback"),
        ("dependency_ids", '["00000000-0000-0000-0000-000000000000"]', "dependencies"),
        ("timeout", "-1", "timeout (-1)"),
    ],
)
async def test_a_planted_field_in_a_job_hash_runs_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    redis_conn: Redis,
    ledger_rows: Ledger,
    field: str,
    value: str,
    message: str,
) -> None:
    """The job hash the API wrote, with one field an intruder added: the job is refused
    before anything in it runs, its task included."""
    CALLED.clear()
    r = await client.post("/jobs", json={"task": "fail", "args": {"message": "ran"}})
    job_id = r.json()["id"]
    redis_conn.hset(f"rq:job:{job_id}", field, value)

    run_worker_burst(settings)

    assert CALLED == []
    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "failed"
    assert row["error"]["type"] == "payload_mismatch"
    assert message in row["error"]["message"]
