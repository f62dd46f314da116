"""`/jobs`: submit, read, list, cancel and retry jobs."""

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import JsonValue
from redis import Redis
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from jobs import registry
from service import broker, errors, ledger, metrics, ratelimit
from service.api.deps import (
    ClientDep,
    ConnDep,
    RedisDep,
    SettingsDep,
    SubmitterDep,
    brief_connection,
)
from service.enqueued import EnqueuedMarks
from service.ledger import Job
from service.schemas import (
    BatchIn,
    BatchOut,
    CanceledOut,
    EventOut,
    JobIn,
    JobOut,
    JobPage,
    problems,
)
from service.settings import Settings
from service.tables import TERMINAL, Status
from service.watch import Watcher

router = APIRouter(prefix="/jobs", tags=["jobs"])

_errors = problems(
    {
        401: "no API key, or not a live one",
        404: "no such job (or not yours)",
        422: "a parameter or field that is not valid here",
        503: "the ledger is unreachable",
    }
)


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={
        **_errors,
        **problems(
            {
                409: "this Idempotency-Key was used for a different request",
                413: "the request body is too large",
                429: "too many submits: wait Retry-After seconds",
            }
        ),
        200: {"description": "the job first submitted with this Idempotency-Key", "model": JobOut},
    },
)
async def submit(
    body: JobIn,
    request: Request,
    response: Response,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: SubmitterDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="the same key returns the same job"),
    ] = None,
) -> JobOut:
    """Record the job in the ledger, then put it on its RQ queue; answers 202 with the job."""
    new = _new_job(body, settings, client.name, idempotency_key)
    row = await ledger.insert_job(conn, new)
    if row is None:  # the key was used before, perhaps by a concurrent request
        assert idempotency_key is not None
        first = await ledger.by_idempotency_key(conn, client.name, idempotency_key)
        if first.request_hash != new.request_hash:
            raise errors.IdempotencyKeyReused(idempotency_key, first.id)
        response.status_code = 200
        response.headers["Location"] = f"/jobs/{first.id}"
        return JobOut.model_validate(first)
    # committed: recorded before anything reaches Redis (DESIGN invariant 1)
    metrics.SUBMITTED.labels(row.task).inc()
    if row.status == Status.QUEUED:
        await _deliver(request, redis, settings, [row])
    response.headers["Location"] = f"/jobs/{row.id}"
    return JobOut.model_validate(row)


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchOut,
    responses={
        **_errors,
        **problems(
            {
                409: "an idempotency key was used for a different request",
                413: "the request body is too large",
                429: "too many submits: wait Retry-After seconds",
            }
        ),
    },
)
async def submit_batch(
    body: BatchIn,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: ClientDep,
) -> BatchOut:
    """Up to 1,000 jobs, all or nothing: one transaction, one Redis pipeline. A job whose
    idempotency key was used before comes back as it was first submitted."""
    if settings.rate_limit_on:
        await run_in_threadpool(ratelimit.take, redis, client.name, settings, len(body.jobs))
    new = _new_jobs(body, settings, client.name)
    async with ledger.transaction(conn):  # a refused idempotency key undoes the whole batch
        inserted = {row.id: row for row in await ledger.insert_jobs(conn, new)}
        firsts = await _firsts(conn, client.name, [job for job in new if job.id not in inserted])
    for task_name, n in Counter(row.task for row in inserted.values()).items():
        metrics.SUBMITTED.labels(task_name).inc(n)
    queued = [row for row in inserted.values() if row.status == Status.QUEUED]
    await _deliver(request, redis, settings, queued)
    return BatchOut(
        jobs=[JobOut.model_validate(inserted.get(job.id) or firsts[job.id]) for job in new]
    )


def _new_jobs(body: BatchIn, settings: Settings, client: str) -> list[ledger.NewJob]:
    """Every job of the batch checked; BatchInvalid lists each refused one by index."""
    new, refused = [], []
    seen: set[str] = set()
    for index, item in enumerate(body.jobs):
        key = item.idempotency_key
        try:
            if key is not None and key in seen:
                raise errors.OptionInvalid(f"idempotency key {key!r} repeats within the batch")
            if key is not None:
                seen.add(key)
            new.append(_new_job(item, settings, client, key))
        except errors.JobServiceError as exc:
            refused.append({"index": index, "detail": exc.detail})
    if refused:
        raise errors.BatchInvalid(refused)
    return new


async def _firsts(
    conn: AsyncConnection, client: str, repeated: list[ledger.NewJob]
) -> dict[UUID, Any]:
    """The first jobs of repeated idempotency keys, by the new id each stands in for."""
    if not repeated:
        return {}
    rows = await ledger.by_idempotency_keys(
        conn, client, [job.idempotency_key or "" for job in repeated]
    )
    by_key = {row.idempotency_key: row for row in rows}
    firsts = {}
    for job in repeated:
        first = by_key[job.idempotency_key]
        if first.request_hash != job.request_hash:
            raise errors.IdempotencyKeyReused(job.idempotency_key or "", first.id)
        firsts[job.id] = first
    return firsts


def _new_job(body: JobIn, settings: Settings, client: str, key: str | None) -> ledger.NewJob:
    """The row to record, after every check that needs the registry or the settings."""
    task = registry.submittable(body.task)
    _json_within("args", body.args, settings.max_args_bytes, settings.max_json_depth)
    _json_within("meta", body.meta, settings.max_meta_bytes, settings.max_json_depth)
    args = task.validate(body.args)
    queue_name = body.queue or task.queue
    if queue_name not in registry.queues():
        raise errors.QueueUnknown(queue_name, registry.queues())
    _within("timeout_s", body.timeout_s, settings.max_timeout_s)
    _within("max_attempts", body.max_attempts, settings.max_attempts_cap)
    _within("backoff_s", body.backoff_s, settings.max_backoff_s)
    _within("delay_s", body.delay_s, settings.max_delay_s)
    now = datetime.now(UTC)
    run_at = body.run_at
    if body.delay_s is not None:
        run_at = now + timedelta(seconds=body.delay_s)
    if run_at is not None:
        _within("run_at (seconds from now)", (run_at - now).total_seconds(), settings.max_delay_s)
        if run_at <= now:
            run_at = None  # already due: queue it now
    callback_url = None if body.callback_url is None else str(body.callback_url)
    if callback_url is not None and settings.callback_secret is None:
        raise errors.OptionInvalid(
            "callback_url cannot be used here: the server has no JOBS_CALLBACK_SECRET to sign "
            "callbacks with"
        )
    request = body.model_dump(mode="json", exclude={"idempotency_key"})
    fingerprint = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return ledger.NewJob(
        id=uuid4(),
        task=task.name,
        queue=queue_name,
        args=args,
        timeout_s=body.timeout_s or task.timeout_s,
        max_attempts=body.max_attempts or task.max_attempts,
        backoff_s=task.backoff_s if body.backoff_s is None else body.backoff_s,
        owner=client,
        meta=body.meta,
        run_at=run_at,
        idempotency_key=key,
        request_hash=hashlib.sha256(fingerprint.encode()).hexdigest() if key else None,
        callback_url=callback_url,
    )


def _within(name: str, value: float | None, cap: float) -> None:
    if value is not None and value > cap:
        raise errors.OptionInvalid(f"{name} {value:g} is over the limit of {cap:g}")


def _json_within(name: str, value: JsonValue, max_bytes: int, max_depth: int) -> None:
    if _depth(value) > max_depth:
        raise errors.OptionInvalid(f"{name} nest deeper than {max_depth} levels")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
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


async def _deliver(request: Request, redis: Redis, settings: Settings, rows: list[Any]) -> None:
    """Enqueue committed `queued` rows in one pipeline, and set their `enqueued_at`: on
    the rows at once, in the ledger a moment later (`service.enqueued`). If Redis refuses,
    they stay as they are and the reconciler delivers them later."""
    if not rows or not await run_in_threadpool(
        broker.try_enqueue_rows, redis, rows, settings.result_ttl_s
    ):
        return
    marks: EnqueuedMarks = request.app.state.marks
    at = datetime.now(UTC)
    for row in rows:
        row.enqueued_at = at
        marks.add(row.id, at)


def _record(row: Job) -> Any:
    """A ledger row as a record whose fields can be updated (`_deliver` sets one)."""
    return SimpleNamespace(**row._mapping)


@router.get("", response_model=JobPage, responses=_errors)
async def list_jobs(
    conn: ConnDep,
    settings: SettingsDep,
    client: ClientDep,
    status: Status | None = None,
    task: str | None = None,
    queue: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, description="page size, up to JOBS_LIST_LIMIT_MAX")] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Your jobs, newest first, one page at a time (keyset pagination)."""
    if limit > settings.list_limit_max:
        raise errors.OptionInvalid(
            f"limit {limit} is over the maximum of {settings.list_limit_max}"
        )
    for name, value in (("task", task), ("queue", queue)):
        if value is not None and "\x00" in value:  # PostgreSQL text cannot hold NUL
            raise errors.OptionInvalid(f"{name} contains a NUL character")
    where = ledger.ListFilter(
        owner=client.owner_filter,
        status=status,
        task=task,
        queue=queue,
        created_after=created_after,
        created_before=created_before,
    )
    rows, next_cursor = await ledger.list_jobs(conn, where, limit, cursor)
    return JobPage(items=[JobOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={**_errors, 304: {"description": "unchanged since the ETag in If-None-Match"}},
)
async def get_job(
    job_id: UUID,
    request: Request,
    response: Response,
    client: ClientDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=60,
            description="hold the request up to this many seconds until the job is final",
        ),
    ] = 0,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """The job. With `wait`, answers as soon as the job is final, or after `wait` seconds
    with its current state. `ETag` names this state of the job: send it back in
    `If-None-Match` and an unchanged job costs a 304 with no body."""
    owner = client.owner_filter
    if wait:
        job = await _wait_final(request, job_id, owner, wait)
    else:
        job = await _read(request, job_id, owner)
    tag = etag(job)
    if if_none_match is not None and tag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return JobOut.model_validate(dict(job))


def etag(job: Mapping[str, Any]) -> str:
    """Every change of a job moves its updated_at, so (id, updated_at) names its state."""
    return f'"{job["id"].hex[:12]}-{job["updated_at"].timestamp():.6f}"'


async def _read(request: Request, job_id: UUID, owner: str | None) -> Mapping[str, Any]:
    async with brief_connection(request) as conn:
        return await ledger.get(conn, job_id, owner)


async def _wait_final(
    request: Request, job_id: UUID, owner: str | None, wait: float
) -> Mapping[str, Any]:
    """The job once it is final, or as it is after `wait` seconds. Holds no connection while
    it waits: the process's one listener wakes it when the job changes."""
    watcher: Watcher = request.app.state.watcher
    deadline = asyncio.get_running_loop().time() + wait
    with watcher.watching(job_id) as changed:  # before the first read: no change is missed
        job = await _read(request, job_id, owner)
        while job["status"] not in TERMINAL:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
            changed.clear()
            job = await _read(request, job_id, owner)
    return job


_NOTICES = {
    broker.Stop.STOPPED: "canceled while running: its work horse was stopped",
    broker.Stop.REQUESTED: (
        "cancel requested: the worker cannot stop this job mid-run (SimpleWorker); "
        "it is canceled, and its outcome will be discarded"
    ),
    broker.Stop.GONE: "canceled while running: no live worker held it",
}


@router.post(
    "/{job_id}/cancel",
    response_model=CanceledOut,
    responses={
        **_errors,
        **problems({409: "the job is already final"}),
        202: {"description": "a running job that its worker cannot stop", "model": CanceledOut},
    },
)
async def cancel(
    job_id: UUID, response: Response, conn: ConnDep, redis: RedisDep, client: ClientDep
) -> CanceledOut:
    """Cancel a job: a queued or scheduled one never runs; a running one is stopped where
    its worker can stop it, and its outcome is discarded in any case."""
    row, was_running = await ledger.cancel(conn, job_id, client.owner_filter)
    await conn.commit()
    if not was_running:
        await run_in_threadpool(broker.withdraw, redis, job_id)
        return CanceledOut.model_validate({**row._mapping, "notice": "canceled before it started"})
    stopped = await run_in_threadpool(broker.stop, redis, job_id, row.worker)
    if stopped == broker.Stop.REQUESTED:
        response.status_code = 202
    return CanceledOut.model_validate({**row._mapping, "notice": _NOTICES[stopped]})


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobOut,
    responses={**_errors, **problems({409: "the job is not failed or canceled"})},
)
async def retry(
    job_id: UUID,
    request: Request,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: ClientDep,
) -> JobOut:
    """Run a failed or canceled job again: a new attempt under the same id."""
    row = _record(await ledger.retry(conn, job_id, client.owner_filter))
    await conn.commit()
    await _deliver(request, redis, settings, [row])
    return JobOut.model_validate(row)


@router.get("/{job_id}/events", response_model=list[EventOut], responses=_errors)
async def events(job_id: UUID, conn: ConnDep, client: ClientDep) -> list[EventOut]:
    """The job's transitions, oldest first."""
    rows = await ledger.events(conn, job_id, client.owner_filter)
    return [EventOut.model_validate(e) for e in rows]
