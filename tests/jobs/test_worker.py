"""The ledger hooks, run in-process (SimpleLedgerWorker, burst): claim, outcome, skips."""

import uuid

import httpx
import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from jobs import builtin
from service import broker, registry
from service.settings import Settings
from tests.support import Ledger, run_worker_burst


async def submit(client: httpx.AsyncClient, task: str, **args: object) -> str:
    r = await client.post("/jobs", json={"task": task, "args": args})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


async def test_finished_job_has_result_and_history(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    job_id = await submit(client, "echo", value={"deep": [1, 2, None]})

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "finished"
    assert row["result"] == {"deep": [1, 2, None]}
    assert row["attempt"] == 1
    assert row["error"] is None
    assert row["lease_expires_at"] is None
    assert ledger_rows.statuses(job_id) == ["queued", "started", "finished"]


async def test_failed_job_keeps_type_message_and_traceback(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    job_id = await submit(client, "fail", message="disk full on /var")

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["error"]["type"] == "TaskFailed"
    assert row["error"]["message"] == "disk full on /var"
    assert "Traceback" in row["error"]["traceback"]
    assert "TaskFailed: disk full on /var" in row["error"]["traceback"]
    assert ledger_rows.statuses(job_id) == ["queued", "started", "failed"]


async def test_timeout_fails_with_type_timeout(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    r = await client.post("/jobs", json={"task": "sleep", "args": {"seconds": 5}, "timeout_s": 1})
    job_id = r.json()["id"]

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["error"]["type"] == "timeout"
    assert "1 second" in row["error"]["message"] or "timeout" in row["error"]["message"].lower()


async def test_canceled_job_is_skipped(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    job_id = await submit(client, "echo", value="never")
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    # deliver it anyway, as a stale queue entry would
    _deliver_again(settings, redis_conn, job_id, {"value": "never"})

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "canceled"
    assert row["started_at"] is None
    assert row["attempt"] == 0
    assert ledger_rows.statuses(job_id) == ["queued", "canceled"]


async def test_duplicate_delivery_runs_once(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    job_id = await submit(client, "echo", value=7)
    _deliver_again(settings, redis_conn, job_id, {"value": 7})
    assert redis_conn.llen("rq:queue:default") == 2

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "finished"
    assert row["attempt"] == 1
    assert ledger_rows.statuses(job_id) == ["queued", "started", "finished"]
    assert redis_conn.llen("rq:queue:default") == 0


async def test_payload_that_differs_from_the_ledger_is_not_run(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    job_id = await submit(client, "echo", value="recorded")
    # someone with Redis access swaps the payload under the same id
    Queue("default", connection=redis_conn, serializer=JSONSerializer).enqueue_call(
        func=builtin.fail, kwargs={"message": "injected"}, job_id=job_id
    )

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["error"]["type"] == "payload_mismatch"
    assert "does not match the recorded task 'echo'" in row["error"]["message"]


async def test_jobs_unknown_to_the_ledger_are_skipped(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    queue = Queue("default", connection=redis_conn, serializer=JSONSerializer)
    queue.enqueue_call(func=builtin.echo, kwargs={"value": 1}, job_id="not-a-ledger-id")
    queue.enqueue_call(func=builtin.echo, kwargs={"value": 1}, job_id=str(uuid.uuid4()))
    job_id = await submit(client, "echo", value="after")

    run_worker_burst(settings)

    assert ledger_rows.count() == 1
    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "finished"
    assert row["result"] == "after"


@pytest.mark.usefixtures("test_tasks")
async def test_result_the_ledger_cannot_store_fails_the_job(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    job_id = await submit(client, "nul_result")

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["error"]["type"] == "result_invalid"
    assert "could not be stored in the ledger" in row["error"]["message"]
    assert (await client.post("/jobs", json={"task": "echo"})).status_code == 202  # still serving


def test_task_functions_still_take_keyword_args() -> None:
    assert builtin.echo(value=3) == 3
    assert registry.get("sleep").validate({"seconds": 1}) == {"seconds": 1.0}


def _deliver_again(
    settings: Settings,
    redis_conn: Redis,
    job_id: str,
    args: dict[str, object],
    task_name: str = "echo",
) -> None:
    """Put a second delivery of the job on its queue, as a redelivery race would."""
    task = registry.get(task_name)
    broker.queue("default", redis_conn).enqueue_call(
        func=task.func,
        kwargs=args,
        job_id=job_id,
        timeout=task.timeout_s,
        result_ttl=settings.result_ttl_s,
    )
