"""The submit path, whoever submits: prepare a new job, record it, hand it to RQ.

1. `prepare` (a client's job: every check and cap, the start time, the request's
   fingerprint for its idempotency key) or `system_job` (the service's own, or the
   benchmark's) makes a `rows.NewJob`;
2. `record_group` (single submits, written together by `service.group_commit`),
   `record_batch` (a batch request, all or nothing; jobs with parents and unique jobs
   through `service.recording`) or `record_sync` (the reconciler, the
   benchmark) commits it; a repeated idempotency key gives back the first job, or
   IdempotencyKeyReused if the request differs;
3. `hand_over` (the API) or `broker.enqueue_known` (the reconciler, a worker's released
   children) puts committed `queued` rows on RQ.

Recorded before enqueued, always (architecture.md, "Record before enqueue"): if Redis
refuses, the row stays `queued` and the reconciler delivers it later.
"""

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from pydantic import JsonValue
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from service import (
    broker,
    concurrency,
    dependencies,
    errors,
    jsontext,
    keys,
    ledger,
    metrics,
    recording,
    registry,
    sql,
    tracing,
    uniqueness,
)
from service.enqueued import EnqueuedMarks
from service.rows import JobRow, NewJob
from service.schemas import BatchIn, JobIn
from service.settings import Settings
from service.tables import Status

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- prepare


def prepare(
    spec: JobIn,
    settings: Settings,
    owner: str,
    key: str | None,
    refs: Mapping[str, UUID] | None = None,
    job_id: UUID | None = None,
) -> NewJob:
    """A client's job, after every check that needs the registry or the settings. In a
    batch, `refs` gives the ids of the batch's jobs by their `ref` (and `job_id` this
    job's, if it has one)."""
    task = registry.submittable(spec.task)
    _json_within("args", spec.args, settings.max_args_bytes, settings.max_json_depth)
    _json_within("meta", spec.meta, settings.max_meta_bytes, settings.max_json_depth)
    args = task.validate(spec.args)
    queue_name = spec.queue or task.queue
    if queue_name not in registry.queues():
        raise errors.QueueUnknown(queue_name, registry.queues())
    _within("timeout_s", spec.timeout_s, settings.max_timeout_s)
    _within("max_attempts", spec.max_attempts, settings.max_attempts_cap)
    _within("backoff_s", spec.backoff_s, settings.max_backoff_s)
    _within("delay_s", spec.delay_s, settings.max_delay_s)
    if spec.run_at is not None:  # a cap on the request; the database decides when it is due
        ahead = (spec.run_at - datetime.now(UTC)).total_seconds()
        _within("run_at (seconds from now)", ahead, settings.max_delay_s)
    callback_url = None if spec.callback_url is None else str(spec.callback_url)
    if callback_url is not None and settings.callback_secret is None:
        raise errors.OptionInvalid(
            "callback_url cannot be used here: the server has no JOBS_CALLBACK_SECRET to sign "
            "callbacks with"
        )
    parents = dependencies.parent_ids(spec.depends_on or [], refs, settings.max_depends_on)
    unique_for_s = spec.unique_for_s or task.unique_for_s
    _within("unique_for_s", unique_for_s, settings.max_unique_for_s)
    unique_key, unique_states = uniqueness.key_of(
        task.name, args, unique_for_s, spec.unique_key, spec.unique_states
    )
    limited_by, most = _concurrency(
        spec.concurrency_key or task.concurrency_key,
        spec.max_concurrency or task.max_concurrency,
        owner,
        task.name,
        args,
    )
    return NewJob(
        id=job_id or uuid4(),
        task=task.name,
        queue=queue_name,
        args=args,
        timeout_s=spec.timeout_s or task.timeout_s,
        max_attempts=spec.max_attempts or task.max_attempts,
        backoff_s=task.backoff_s if spec.backoff_s is None else spec.backoff_s,
        owner=owner,
        meta=dict(spec.meta),
        run_at=spec.run_at,
        delay_s=spec.delay_s,
        idempotency_key=key,
        request_hash=_fingerprint(spec) if key else None,
        callback_url=callback_url,
        trace_context=tracing.traceparent(),
        depends_on=parents,
        on_parent_failure=(spec.on_parent_failure or "cancel") if parents else None,
        unique_key=unique_key,
        unique_for_s=unique_for_s,
        unique_states=unique_states,
        concurrency_key=limited_by,
        max_concurrency=most,
        priority=task.priority if spec.priority is None else spec.priority,
        fair_quota=settings.fair_quota(owner),
    )


@dataclass(frozen=True)
class PreparedBatch:
    jobs: list[NewJob]  # in the request's order
    refs: dict[str, UUID]  # each ref's job (its id until recorded: see `record_batch`)
    on_complete: NewJob | None  # waits for every job of the batch


def prepare_batch(batch: BatchIn, settings: Settings, owner: str) -> PreparedBatch:
    """Every job of the batch checked; BatchInvalid lists each refused one by index. Refs
    name jobs of the batch, and their dependencies may not form a cycle."""
    refs = dependencies.refs(batch)
    new, refused = [], []
    seen: set[str] = set()
    for index, item in enumerate(batch.jobs):
        key = item.idempotency_key
        try:
            if key is not None and key in seen:
                raise errors.OptionInvalid(f"idempotency key {key!r} repeats within the batch")
            if key is not None:
                seen.add(key)
            job_id = refs[item.ref] if item.ref is not None else None
            new.append(prepare(item, settings, owner, key, refs, job_id))
        except errors.JobServiceError as exc:
            refused.append({"index": index, "detail": exc.detail})
    if refused:
        raise errors.BatchInvalid(refused)
    dependencies.refuse_cycles(new)
    on_complete = None
    if batch.on_complete is not None:
        try:
            final = prepare(batch.on_complete, settings, owner, None)
        except errors.JobServiceError as exc:
            raise errors.BatchInvalid([{"on_complete": True, "detail": exc.detail}]) from None
        on_complete = dataclasses.replace(
            final, depends_on=tuple(job.id for job in new), on_parent_failure="run"
        )
    return PreparedBatch(new, refs, on_complete)


def system_job(
    task_name: str,
    args: dict[str, object],
    *,
    owner: str = keys.SYSTEM_CLIENT,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    backoff_s: float | None = None,
    trace_context: str | None = None,
    queue: str | None = None,
    meta: dict[str, object] | None = None,
    fair_quota: int = 0,
) -> NewJob:
    """A job the service submits itself (as the client `system`, or for a client: a
    schedule's tick, under the client's `fair_quota`): the task's own policy, no client
    caps."""
    task = registry.get(task_name)
    valid = task.validate(args)
    limited_by, most = _concurrency(
        task.concurrency_key, task.max_concurrency, owner, task.name, valid
    )
    return NewJob(
        id=uuid4(),
        task=task.name,
        queue=queue or task.queue,
        args=valid,
        timeout_s=task.timeout_s,
        max_attempts=max_attempts or task.max_attempts,
        backoff_s=task.backoff_s if backoff_s is None else backoff_s,
        owner=owner,
        meta=meta if meta is not None else {"by": "reconciler"},
        idempotency_key=idempotency_key,
        trace_context=trace_context,
        concurrency_key=limited_by,
        max_concurrency=most,
        priority=task.priority,
        fair_quota=fair_quota,
    )


def _concurrency(
    template: str | None, most: int | None, owner: str, task: str, args: dict[str, object]
) -> tuple[str | None, int | None]:
    """A job's concurrency key (resolved) and limit, or neither."""
    if template is None:
        if most is not None:
            raise errors.OptionInvalid("max_concurrency needs concurrency_key")
        return None, None
    if most is None:
        raise errors.OptionInvalid("concurrency_key needs max_concurrency")
    return concurrency.resolve(template, owner, task, args), most


# Fields added to JobIn after keys were first fingerprinted count only when given, so a
# request repeated across an upgrade keeps its fingerprint.
_ADDED_FIELDS = (
    "depends_on",
    "on_parent_failure",
    "ref",
    "unique_for_s",
    "unique_key",
    "unique_states",
    "concurrency_key",
    "max_concurrency",
)


def _fingerprint(spec: JobIn) -> str:
    """The request, minus its idempotency key: a repeated key must come with the same."""
    request = spec.model_dump(mode="json", exclude={"idempotency_key"})
    for name in _ADDED_FIELDS:
        if request.get(name) is None:
            request.pop(name, None)
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _within(name: str, value: float | None, cap: float) -> None:
    if value is not None and value > cap:
        raise errors.OptionInvalid(f"{name} {value:g} is over the limit of {cap:g}")


def _json_within(name: str, value: JsonValue, max_bytes: int, max_depth: int) -> None:
    if _depth(value) > max_depth:
        raise errors.OptionInvalid(f"{name} nest deeper than {max_depth} levels")
    size = len(jsontext.dumps(value))
    if size > max_bytes:
        raise errors.OptionInvalid(
            f"{name} take {size} bytes as JSON, over the limit of {max_bytes}"
        )


def _depth(value: JsonValue) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


# ---------------------------------------------------------------- record


async def record_batch(
    conn: AsyncConnection, batch: list[NewJob]
) -> tuple[list[JobRow], list[JobRow]]:
    """Commit jobs all or nothing (a refused idempotency key undoes the whole batch);
    returns every job's row in the batch's order, and the rows that are new."""
    if recording.needed(batch):
        pairs = await recording.record(conn, batch)
    else:
        answers = await _record(conn, batch, all_or_nothing=True)
        pairs = [a for a in answers if not isinstance(a, Exception)]  # a refusal was raised
    return [row for row, _ in pairs], [row for row, new in pairs if new]


async def record_group(
    conn: AsyncConnection, group: list[NewJob]
) -> list[tuple[JobRow, bool] | errors.IdempotencyKeyReused]:
    """Commit independent jobs by one statement (group commit); for each, its row and
    whether it is new, or the IdempotencyKeyReused that refuses it alone. If the ledger
    fails, nothing of the group is recorded (a 503 keeps its meaning)."""
    return await _record(conn, group, all_or_nothing=False)


async def _record(
    conn: AsyncConnection, jobs: list[NewJob], all_or_nothing: bool
) -> list[tuple[JobRow, bool] | errors.IdempotencyKeyReused]:
    """One insert for all the jobs; a repeated idempotency key gives back its first job,
    one reused for a different request is refused: the whole batch (`all_or_nothing`,
    raised, rolled back) or that job alone (returned in its place)."""
    if not any(job.idempotency_key for job in jobs):  # one statement: no BEGIN
        created = await ledger.insert_jobs(conn, jobs)
        by_id = {row.id: row for row in created}
        answers: list[tuple[JobRow, bool] | errors.IdempotencyKeyReused] = [
            (by_id[job.id], True) for job in jobs
        ]
    else:  # the first jobs of repeated keys are read in the same transaction
        async with sql.transaction(conn):
            created = await ledger.insert_jobs(conn, jobs)
            answers = await _answers(conn, jobs, created)
            if all_or_nothing:
                for answer in answers:
                    if isinstance(answer, errors.IdempotencyKeyReused):
                        raise answer
    for task_name, n in Counter(row.task for row in created).items():
        metrics.SUBMITTED.labels(task_name).inc(n)
    return answers


async def _answers(
    conn: AsyncConnection, jobs: list[NewJob], created: list[JobRow]
) -> list[tuple[JobRow, bool] | errors.IdempotencyKeyReused]:
    """Each job's row and whether it is new: its own, or the first job of its owner's
    idempotency key (IdempotencyKeyReused if that one was a different request)."""
    by_id = {row.id: row for row in created}
    firsts = await ledger.first_jobs(conn, [job for job in jobs if job.id not in by_id])
    answers: list[tuple[JobRow, bool] | errors.IdempotencyKeyReused] = []
    for job in jobs:
        if job.id in by_id:
            answers.append((by_id[job.id], True))
            continue
        first = firsts[(job.owner, job.idempotency_key or "")]
        if first.request_hash != job.request_hash:
            answers.append(errors.IdempotencyKeyReused(job.idempotency_key or "", first.id))
        else:
            answers.append((first, False))
    return answers


def record_sync(conn: Connection, batch: list[NewJob], actor: str) -> list[JobRow]:
    """Record jobs in the caller's transaction; returns the new rows (a used idempotency
    key records nothing: the service's own jobs use keys to run once)."""
    return ledger.insert_jobs_sync(conn, batch, actor)


# ---------------------------------------------------------------- hand over to RQ


async def hand_over(
    redis: Redis, marks: EnqueuedMarks, settings: Settings, rows: Sequence[JobRow]
) -> list[JobRow]:
    """Enqueue the committed `queued` rows among `rows` in one pipeline and return every
    row, those enqueued with `enqueued_at` set (the ledger records it a moment later,
    `service.enqueued`). If Redis refuses, they stay as they are for the reconciler."""
    queued = [row for row in rows if row.status == Status.QUEUED and not row.parked]
    if not queued:
        return list(rows)
    try:
        await run_in_threadpool(broker.enqueue_rows, redis, queued, settings.result_ttl_s)
    except RedisError as exc:
        log.warning("%d jobs recorded but not enqueued: %s", len(queued), exc)
        return list(rows)
    at = datetime.now(UTC)
    for row in queued:
        marks.add(row.id, at)
    sent = {row.id for row in queued}
    return [row.enqueued(at) if row.id in sent else row for row in rows]
