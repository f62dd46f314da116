"""`/jobs`: submit, read, list, cancel and retry jobs (HTTP in and out; the work is in
`service.submit`, `service.ledger` and `service.broker`)."""

import asyncio
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service import (
    broker,
    dependencies,
    errors,
    ledger,
    listing,
    ratelimit,
    recording,
    submit,
    watch,
)
from service.api.deps import (
    ClientDep,
    ConnDep,
    LimitedClientDep,
    RedisDep,
    SettingsDep,
    brief_connection,
    still_allowed,
)
from service.group_commit import GroupCommit
from service.rows import JobRow
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
from service.tables import Status

router = APIRouter(prefix="/jobs", tags=["jobs"])

_TOO_MANY = "too many requests: wait Retry-After seconds"
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
                429: _TOO_MANY,
            }
        ),
        200: {
            "description": "the job first submitted with this Idempotency-Key, or the job a"
            " unique job repeats",
            "model": JobOut,
        },
    },
)
async def submit_job(
    body: JobIn,
    request: Request,
    response: Response,
    settings: SettingsDep,
    redis: RedisDep,
    client: LimitedClientDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="the same key returns the same job"),
    ] = None,
) -> JobOut:
    """Record the job in the ledger, then put it on its RQ queue; answers 202 with the job.
    With `depends_on` it waits as `waiting` until its parents are final."""
    new = submit.prepare(body, settings, client.name, idempotency_key)
    if recording.needed([new]):  # parents or a unique key to lock: a transaction of its own
        async with brief_connection(request) as conn:
            [row], fresh = await submit.record_batch(conn, [new])
        [row] = await submit.hand_over(redis, request.app.state.marks, settings, [row])
        created = bool(fresh)
    else:
        submits: GroupCommit = request.app.state.submits
        row, created = await submits.submit(new)  # recorded, then enqueued, with its group
    response.headers["Location"] = f"/jobs/{row.id}"
    if not created:  # the first job of this Idempotency-Key
        response.status_code = 200
    return _out(row)


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
                429: _TOO_MANY,
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
    idempotency key was used before comes back as it was first submitted. Jobs may depend
    on each other by `ref` (a workflow: recorded whole, cycles refused), and `on_complete`
    names one more job that runs once all of them are final."""
    n = len(body.jobs) + (body.on_complete is not None)
    if settings.rate_limit_on:
        await run_in_threadpool(ratelimit.take, redis, client.name, settings, n)
    batch = submit.prepare_batch(body, settings, client.name)
    final = [batch.on_complete] if batch.on_complete else []
    rows, created = await submit.record_batch(conn, batch.jobs + final)
    sent = await submit.hand_over(redis, request.app.state.marks, settings, created)
    by_id = {row.id: row for row in sent}
    out = [_out(by_id.get(row.id, row)) for row in rows]
    index = {job.id: i for i, job in enumerate(batch.jobs)}
    return BatchOut(
        jobs=out[: len(batch.jobs)],
        refs={ref: out[index[job_id]].id for ref, job_id in batch.refs.items()},
        on_complete=out[-1] if final else None,
    )


def _out(row: JobRow) -> JobOut:
    return JobOut.model_validate(vars(row))


@router.get("", response_model=JobPage, responses=_errors)
async def list_jobs(
    conn: ConnDep,
    settings: SettingsDep,
    client: ClientDep,
    status: Status | None = None,
    task: str | None = None,
    queue: str | None = None,
    parent: Annotated[UUID | None, Query(description="only the jobs that depend on it")] = None,
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
    where = listing.ListFilter(
        owner=client.owner_filter,
        status=status,
        task=task,
        queue=queue,
        parent=parent,
        created_after=created_after,
        created_before=created_before,
    )
    rows, next_cursor = await listing.list_jobs(conn, where, limit, cursor)
    return JobPage(items=[_out(row) for row in rows], next_cursor=next_cursor)


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

    async def read() -> JobRow:
        if wait and not await still_allowed(request):  # a revoked key's long-poll ends
            raise errors.Unauthenticated("invalid or revoked API key")
        async with brief_connection(request) as conn:
            return await ledger.get(conn, job_id, owner)

    if wait:
        every_s = max(request.app.state.settings.key_cache_s, 0.5)
        job = await watch.wait_final(request.app.state.watcher, job_id, read, wait, every_s)
    else:
        job = await read()
    tag = etag(job)
    if if_none_match is not None and tag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return _out(job)


def etag(job: JobRow) -> str:
    """Every change of a job moves its updated_at, so (id, updated_at) names its state."""
    return f'"{job.id.hex[:12]}-{job.updated_at.timestamp():.6f}"'


_NOTICES = {
    broker.Stop.STOPPED: "canceled while running: its work horse was stopped",
    broker.Stop.REQUESTED: (
        "cancel requested: the worker runs jobs in-process (SimpleWorker) and stops this one "
        "at its next lease check; it is canceled, and its outcome will be discarded"
    ),
    broker.Stop.GONE: "canceled while running: no live worker held it",
}


@router.post(
    "/{job_id}/cancel",
    response_model=CanceledOut,
    responses={
        **_errors,
        **problems({409: "the job is already final", 429: _TOO_MANY}),
        202: {"description": "a running job that its worker cannot stop", "model": CanceledOut},
    },
)
async def cancel(
    job_id: UUID,
    request: Request,
    response: Response,
    conn: ConnDep,
    redis: RedisDep,
    settings: SettingsDep,
    client: LimitedClientDep,
) -> CanceledOut:
    """Cancel a job: a queued or scheduled one never runs; a running one is stopped where
    its worker can stop it, and its outcome is discarded in any case."""
    row, was_running = await ledger.cancel(conn, job_id, client.owner_filter)
    if row.has_children:  # children that run whatever their parents' outcome are released
        released = await dependencies.released_children_async(conn, [job_id])
        await submit.hand_over(redis, request.app.state.marks, settings, released)
    if not was_running:
        await run_in_threadpool(broker.withdraw, redis, job_id)
        return CanceledOut.model_validate({**vars(row), "notice": "canceled before it started"})
    stopped = await run_in_threadpool(broker.stop, redis, job_id, row.worker)
    if stopped == broker.Stop.REQUESTED:
        response.status_code = 202
    return CanceledOut.model_validate({**vars(row), "notice": _NOTICES[stopped]})


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobOut,
    responses={
        **_errors,
        **problems(
            {
                409: "the job is not failed or canceled, or its canceled attempt is still running",
                429: _TOO_MANY,
            }
        ),
    },
)
async def retry(
    job_id: UUID,
    request: Request,
    redis: RedisDep,
    settings: SettingsDep,
    client: LimitedClientDep,
) -> JobOut:
    """Run a failed or canceled job again: a new attempt under the same id. A job canceled
    while running is retried once that attempt has stopped: the request waits for it (up
    to JOBS_LEASE_S), holding no connection while it waits."""
    deadline = asyncio.get_running_loop().time() + settings.lease_s + 1
    while True:
        try:
            async with brief_connection(request) as conn:
                row = await ledger.retry(conn, job_id, client.owner_filter)
            break
        except errors.AttemptStillRunning:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
    [row] = await submit.hand_over(redis, request.app.state.marks, settings, [row])
    return _out(row)


@router.get("/{job_id}/events", response_model=list[EventOut], responses=_errors)
async def events(job_id: UUID, conn: ConnDep, client: ClientDep) -> list[EventOut]:
    """The job's transitions, oldest first."""
    rows = await ledger.events(conn, job_id, client.owner_filter)
    return [EventOut.model_validate(e) for e in rows]
