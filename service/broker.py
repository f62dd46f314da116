"""Redis and RQ: the connection, the one serializer, queues, and putting ledger rows on them.

RQ's client is synchronous; the API calls these functions in a worker thread.
"""

import logging
from typing import Any
from uuid import UUID

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.registry import Task
from service.settings import Settings

log = logging.getLogger(__name__)

# Nothing from a request is ever unpickled: every RQ object here uses JSON.
SERIALIZER = JSONSerializer


def connect(settings: Settings) -> Redis:
    return Redis.from_url(
        str(settings.redis_url),
        socket_connect_timeout=settings.redis_connect_timeout_s,
        socket_timeout=settings.redis_socket_timeout_s,
        health_check_interval=30,
    )


def queue(name: str, connection: Redis) -> Queue:
    return Queue(name, connection=connection, serializer=SERIALIZER)


def enqueue(
    connection: Redis,
    task: Task,
    *,
    job_id: UUID,
    queue_name: str,
    args: dict[str, Any],
    timeout_s: int,
    result_ttl_s: int,
) -> None:
    """Put a recorded job on its RQ queue under the ledger's id."""
    queue(queue_name, connection).enqueue_call(
        func=task.func,
        kwargs=args,
        job_id=str(job_id),
        timeout=timeout_s,
        result_ttl=result_ttl_s,
        description=task.name,  # what rq-dashboard lists; args stay out of its pages
    )


def try_enqueue(connection: Redis, task: Task, **kw: Any) -> bool:
    """Enqueue; False if Redis refused (the row stays queued for a later delivery)."""
    try:
        enqueue(connection, task, **kw)
    except RedisError as exc:
        log.warning("job %s recorded but not enqueued: %s", kw.get("job_id"), exc)
        return False
    return True


def withdraw(connection: Redis, job_id: UUID) -> None:
    """Best effort: take a canceled job out of its RQ queue. The ledger already decided."""
    try:
        Job.fetch(str(job_id), connection=connection, serializer=SERIALIZER).cancel()
    except (RedisError, NoSuchJobError, InvalidJobOperation) as exc:
        log.info("canceled job %s left in Redis (%s); workers will skip it", job_id, exc)


def ping(connection: Redis) -> None:
    connection.ping()
