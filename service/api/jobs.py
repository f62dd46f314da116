"""`/jobs`: submit, read, list and cancel jobs."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from jobs import registry
from service import broker, errors, ledger
from service.api.deps import ClientDep, RedisDep, SettingsDep
from service.db import ConnDep
from service.schemas import EventOut, JobIn, JobOut, JobPage
from service.tables import Status

router = APIRouter(prefix="/jobs", tags=["jobs"])

_errors: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such job (or not yours)"},
    422: {"description": "unknown task or queue, or args that do not fit the task"},
    503: {"description": "the ledger is unreachable; nothing was recorded"},
}


@router.post("", status_code=202, response_model=JobOut, responses=_errors)
async def submit(
    body: JobIn,
    response: Response,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: ClientDep,
) -> JobOut:
    """Record the job in the ledger, then put it on its RQ queue; answers 202 with the job."""
    task = registry.get(body.task)
    args = task.validate(body.args)
    queue_name = body.queue or task.queue
    if queue_name not in registry.queues():
        raise errors.QueueUnknown(queue_name, registry.queues())
    if body.timeout_s is not None and body.timeout_s > settings.max_timeout_s:
        raise errors.OptionInvalid(
            f"timeout_s {body.timeout_s} is over the limit of {settings.max_timeout_s} seconds"
        )
    timeout_s = body.timeout_s or task.timeout_s

    job_id = uuid4()
    row = await ledger.insert_job(
        conn,
        job_id=job_id,
        task=task.name,
        queue=queue_name,
        args=args,
        timeout_s=timeout_s,
        max_attempts=task.max_attempts,
        owner=client,
        meta=body.meta,
    )
    await conn.commit()  # recorded before anything reaches Redis (DESIGN invariant 1)

    enqueued = await run_in_threadpool(
        broker.try_enqueue,
        redis,
        task,
        job_id=job_id,
        queue_name=queue_name,
        args=args,
        timeout_s=timeout_s,
        result_ttl_s=settings.result_ttl_s,
    )
    if enqueued:
        row = await ledger.mark_enqueued(conn, job_id)
        await conn.commit()
    response.headers["Location"] = f"/jobs/{job_id}"
    return JobOut.model_validate(row)


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
    where = ledger.ListFilter(
        owner=client,
        status=status,
        task=task,
        queue=queue,
        created_after=created_after,
        created_before=created_before,
    )
    rows, next_cursor = await ledger.list_jobs(conn, where, limit, cursor)
    return JobPage(items=[JobOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=_errors)
async def get_job(job_id: UUID, conn: ConnDep, client: ClientDep) -> JobOut:
    return JobOut.model_validate(await ledger.get(conn, job_id, client))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={**_errors, 409: {"description": "the job is running or already final"}},
)
async def cancel(job_id: UUID, conn: ConnDep, redis: RedisDep, client: ClientDep) -> JobOut:
    """Cancel a queued or scheduled job: it will never run."""
    row = await ledger.cancel(conn, job_id, client)
    await conn.commit()
    await run_in_threadpool(broker.withdraw, redis, job_id)
    return JobOut.model_validate(row)


@router.get("/{job_id}/events", response_model=list[EventOut], responses=_errors)
async def events(job_id: UUID, conn: ConnDep, client: ClientDep) -> list[EventOut]:
    """The job's transitions, oldest first."""
    return [EventOut.model_validate(e) for e in await ledger.events(conn, job_id, client)]
