"""Jobs put on RQ from ledger rows are the jobs RQ itself would have enqueued."""

import uuid
from datetime import UTC, datetime

from redis import Redis
from rq.job import Job

from service import broker, registry
from service.rows import JobRow
from service.settings import Settings

STAMPS = {b"created_at", b"enqueued_at"}


def _row(task: str, queue: str, args: dict[str, object], timeout_s: int) -> JobRow:
    now = datetime.now(UTC)
    return JobRow(
        id=uuid.uuid4(), task=task, queue=queue, args=args, status="queued", attempt=0,
        max_attempts=3, backoff_s=1.0, timeout_s=timeout_s, result=None, error=None,
        progress=None, owner="tester", idempotency_key=None, request_hash=None, meta={},
        run_at=None, lease_expires_at=None, worker=None, claim_token=None, checked_at=None,
        created_at=now, enqueued_at=None, started_at=None, finished_at=None, updated_at=now,
        callback_url=None, callback_for=None, trace_context=None, depends_on=None,
        pending_parents=0, on_parent_failure=None, has_children=False, unique_key=None,
        concurrency_key=None, max_concurrency=None, held=False, throttled=0, priority=0,
        parked=False,
    )  # fmt: skip


def _by_rq(redis_conn: Redis, row: JobRow, ttl_s: int) -> None:
    task = registry.get(row.task)
    broker.queue(row.queue, redis_conn).enqueue_call(
        func=task.func,
        kwargs=row.args,
        job_id=str(row.id),
        timeout=row.timeout_s,
        result_ttl=ttl_s,
        failure_ttl=ttl_s,
        description=task.name,
    )


def test_a_job_hash_is_the_one_rq_writes(settings: Settings, redis_conn: Redis) -> None:
    registry.load(settings.task_modules)
    rows = [
        _row("echo", "default", {"value": {"nested": [1, "two", None]}}, 30),
        _row("echo", "default", {"value": 2}, 30),
        _row("echo", "default", {"value": 3}, 90),  # another timeout: another template
        _row("sleep", "default", {"seconds": 0.5}, 30),
        _row("send_email", "email", {"to": "a@example.com", "subject": "s", "body": "b"}, 60),
    ]
    expected = {}
    for row in rows:
        _by_rq(redis_conn, row, 77)
        expected[row.id] = redis_conn.hgetall(Job.key_for(str(row.id)))
    redis_conn.flushdb()

    before = datetime.now(UTC).replace(microsecond=0)
    broker.enqueue_rows(redis_conn, rows, 77)

    for row in rows:
        written = redis_conn.hgetall(Job.key_for(str(row.id)))
        assert {k: v for k, v in written.items() if k not in STAMPS} == {
            k: v for k, v in expected[row.id].items() if k not in STAMPS
        }
        assert set(written) == set(expected[row.id])
        job = Job.fetch(str(row.id), connection=redis_conn, serializer=broker.SERIALIZER)
        assert (job.func_name, job.kwargs, job.timeout, job.origin) == (
            registry.get(row.task).func.__module__ + "." + registry.get(row.task).func.__name__,
            row.args,
            row.timeout_s,
            row.queue,
        )
        assert job.get_status() == "queued"
        assert job.created_at is not None and job.enqueued_at is not None
        assert abs((job.created_at - row.created_at).total_seconds()) < 0.001
        assert job.enqueued_at >= before
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [
        str(row.id).encode() for row in rows if row.queue == "default"
    ]
    assert redis_conn.lrange("rq:queue:email", 0, -1) == [str(rows[-1].id).encode()]
    assert redis_conn.smembers("rq:queues") == {b"rq:queue:default", b"rq:queue:email"}
