"""Redis and RQ: the connection, the one serializer, queues, and putting ledger rows on them.

RQ's client is synchronous; the API calls these functions in a worker thread.
"""

import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from redis import Redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel
from redis.typing import EncodableT, FieldT
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from service import errors, priorities, registry
from service.rows import JobRow
from service.settings import Settings

log = logging.getLogger(__name__)

CONCURRENCY_META = "concurrency_key"  # a keyed job's key, in its RQ meta (service.concurrency)

# Nothing from a request is ever unpickled: every RQ object here uses JSON.
SERIALIZER = JSONSerializer


def connect(settings: Settings, *, ride_out_s: float = 0) -> Redis:
    """A client of `REDIS_URL`, or of the master that `REDIS_SENTINELS` name. A command
    whose connection fails is tried once more at once, on a fresh connection (one left
    from before a Redis restart is dead), and then given up: the API does not wait for
    Redis, the reconciler redelivers. `ride_out_s`: keep trying for about that long
    instead (a worker rides out a Redis restart or failover mid-job this way)."""
    retry = Retry(NoBackoff(), retries=1)
    if ride_out_s > 0:  # backoff 0.1, 0.2, 0.4, 0.8, then 1 s a try
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=int(ride_out_s) + 2)
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_timeout": settings.redis_socket_timeout_s,
        "health_check_interval": 30,
        "retry": retry,
    }
    if not settings.redis_sentinels:
        return Redis.from_url(str(settings.redis_url), **options)
    # Behind Sentinel, each new connection asks the sentinels where the master is, and a
    # connection to a master that was demoted (or is gone) fails and is made again: the
    # retry above then reaches the promoted replica.
    url = parse_url(str(settings.redis_url))  # type: ignore[no-untyped-call]
    sentinels = Sentinel(
        settings.sentinels,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=settings.redis_socket_timeout_s,
    )
    master: Redis = sentinels.master_for(
        settings.redis_sentinel_master,
        db=url.get("db", 0),
        username=url.get("username"),
        password=url.get("password"),
        **options,
    )
    return master


def queue_depths(connection: Redis, names: Sequence[str]) -> dict[str, int]:
    """How many jobs wait in each queue's RQ lists (one a priority)."""
    lists = priorities.listening(names)
    with connection.pipeline(transaction=False) as pipe:
        for name in lists:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        depths = dict.fromkeys(names, 0)
        for name, depth in zip(lists, pipe.execute(), strict=True):
            depths[priorities.queue_of(name)] += depth
        return depths


def workers_listening(connection: Redis, names: Sequence[str]) -> dict[str, int]:
    """How many workers are registered on each queue (RQ's `rq:workers:<queue>` sets)."""
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.scard(WORKERS_BY_QUEUE_KEY % name)
        return dict(zip(names, pipe.execute(), strict=True))


def queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection, serializer=SERIALIZER)


def enqueue_rows(connection: Redis, rows: Sequence[JobRow], result_ttl_s: int) -> None:
    """Put recorded jobs on their RQ queues under the ledger's ids, in one pipeline;
    raises RedisError if Redis refuses. The ledger keeps outcomes: RQ keeps a finished or
    failed job's hash only `result_ttl_s`, for the worker to read.

    Each job's hash is the one `Queue.enqueue_call` writes (tests/service/test_broker.py
    compares them field by field), built from a template: RQ's own `Job`, made once per
    task, queue and timeout, with the job's id, arguments and times put in: less than half
    of what building an RQ `Job` for each job costs (docs/performance.md, "Batch")."""
    templates: dict[tuple[str, str, int], _Template] = {}
    with connection.pipeline() as pipe:
        for name in sorted({rq_queue(row) for row in rows}):
            pipe.sadd(Queue.redis_queues_keys, Queue.redis_queue_namespace_prefix + name)
        enqueued_at = utcformat(now())
        created: dict[datetime, str] = {}  # a batch's jobs share one (its transaction's)
        for row in rows:
            shape = (row.task, rq_queue(row), row.timeout_s)
            if shape not in templates:
                templates[shape] = _Template(connection, *shape, result_ttl_s)
            job_id = str(row.id)
            if row.created_at not in created:
                created[row.created_at] = utcformat(row.created_at)
            fields = templates[shape].fields(row, created[row.created_at], enqueued_at)
            pipe.hset(Job.key_for(job_id), mapping=fields)
            pipe.rpush(Queue.redis_queue_namespace_prefix + shape[1], job_id)
        pipe.execute()


def rq_queue(row: JobRow) -> str:
    """The RQ queue (list) a job waits in: its queue's list of its priority."""
    return priorities.rq_name(row.queue, row.priority)


class _Template:
    """An RQ job hash for one task, queue and timeout, less what differs per job."""

    def __init__(
        self, connection: Redis, task_name: str, queue_name: str, timeout_s: int, ttl_s: int
    ) -> None:
        task = registry.get(task_name)
        self.job = Job.create(
            task.func,
            kwargs={},
            connection=connection,
            timeout=timeout_s,
            result_ttl=ttl_s,
            failure_ttl=ttl_s,
            description=task.name,  # what rq-dashboard lists; args stay out of its pages
            origin=queue_name,
            status=JobStatus.QUEUED,
            serializer=SERIALIZER,
        )
        self.job.enqueued_at = now()
        self.common: dict[FieldT, EncodableT] = self.job.to_dict()

    def fields(self, row: JobRow, created_at: str, enqueued_at: str) -> dict[FieldT, EncodableT]:
        self.job.kwargs = row.args  # RQ's own encoding of the call
        fields: dict[FieldT, EncodableT] = {
            **self.common,
            "created_at": created_at,
            "enqueued_at": enqueued_at,
            "data": zlib.compress(self.job.data),
        }
        if row.concurrency_key is not None:
            meta = {CONCURRENCY_META: row.concurrency_key}
            fields["meta"] = SERIALIZER.dumps(meta)  # type: ignore[no-untyped-call]
        return fields


@dataclass(frozen=True)
class QueueView:
    """What Redis shows of one queue, read in O(1) plus one short list."""

    head: str | None  # the id a worker pops next; None: the queue is empty
    popped: frozenset[str]  # ids a worker moved to the intermediate list, not yet started


def enqueue_known(redis: Redis, rows: Sequence[JobRow], result_ttl_s: int) -> list[JobRow]:
    """Enqueue the rows whose task this process knows, but for parked ones (fair share:
    not in Redis on purpose); raises RedisError if Redis refuses; returns those sent."""
    known = [row for row in rows if not row.parked and _task_known(row.task)]
    if known:
        enqueue_rows(redis, known, result_ttl_s)
    return known


def _task_known(name: str) -> bool:
    try:
        registry.get(name)
    except errors.TaskUnknown as exc:
        log.error("cannot enqueue: %s (check JOBS_TASK_MODULES)", exc)
        return False
    return True


def queue_views(connection: Redis, names: Iterable[str]) -> dict[str, QueueView]:
    """Each queue's head and popped ids. The intermediate list does not grow with the
    queue: a worker takes out what it popped within milliseconds."""
    names = sorted(set(names))
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            q = queue(name, connection)
            pipe.lindex(q.key, 0)
            pipe.lrange(q.intermediate_queue_key, 0, -1)
        found = pipe.execute()
    views = {}
    for i, name in enumerate(names):
        head, popped = found[2 * i : 2 * i + 2]
        views[name] = QueueView(
            head=_text(head) if head is not None else None,
            popped=frozenset(_text(member) for member in popped),
        )
    return views


def job_states(connection: Redis, ids: Sequence[UUID]) -> dict[UUID, str | None]:
    """RQ's status of each job (None: Redis holds no such job), one O(1) read each."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(str(job_id)), "status")
        states = pipe.execute()
    return {
        job_id: _text(state) if state is not None else None
        for job_id, state in zip(ids, states, strict=True)
    }


def forget_popped(connection: Redis, queue_name: str, job_id: UUID) -> None:
    """Take an id out of a queue's intermediate list (its worker died holding it)."""
    connection.lrem(queue(queue_name, connection).intermediate_queue_key, 1, str(job_id))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Stop(StrEnum):
    STOPPED = "stopped"  # the work horse was killed
    REQUESTED = "requested"  # the worker cannot stop it (SimpleWorker) or has not started it
    GONE = "gone"  # no live worker holds it


def stop(connection: Redis, job_id: UUID, worker_name: str | None) -> Stop:
    """Best effort: stop a running job's work horse (RQ's stop-job command)."""
    try:
        if not worker_name or not connection.exists(f"rq:worker:{worker_name}"):
            return Stop.GONE
        if connection.hget(f"rq:worker:{worker_name}", "stops_jobs") != b"1":
            return Stop.REQUESTED
        send_stop_job_command(connection, str(job_id), serializer=SERIALIZER)
    except (RedisError, NoSuchJobError, InvalidJobOperation) as exc:
        log.info("job %s: stop not sent (%s)", job_id, exc)
        return Stop.REQUESTED
    return Stop.STOPPED


def withdraw(connection: Redis, job_id: UUID) -> None:
    """Best effort: take a canceled job out of its RQ queue and delete its hash. The ledger
    already decided."""
    try:
        Job.fetch(str(job_id), connection=connection, serializer=SERIALIZER).delete()
    except (RedisError, NoSuchJobError, InvalidJobOperation) as exc:
        log.info("canceled job %s left in Redis (%s); workers will skip it", job_id, exc)


def forget(connection: Redis, job_id: str, queue_name: str, ttl_s: int) -> None:
    """A delivery the ledger refused (canceled, final, duplicate): out of the queue's
    intermediate list, and its hash expires unless another delivery is running it."""
    key = Job.key_for(job_id)
    with connection.pipeline() as pipe:
        pipe.lrem(queue(queue_name, connection).intermediate_queue_key, 1, job_id)
        pipe.hget(key, "status")
        _, status = pipe.execute()
    if status == JobStatus.QUEUED.value.encode():
        connection.expire(key, ttl_s)


def ping(connection: Redis) -> None:
    connection.ping()
