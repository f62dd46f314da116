"""Every SQL statement about jobs. Each state change is one conditional statement that also
appends its `job_events` row (a data-modifying CTE), so a transition and its history
commit together or not at all.

The API calls the async functions with an `AsyncConnection`; workers call the sync ones
with a `Connection`. Callers own the transaction.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Insert,
    Row,
    Select,
    Update,
    and_,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from service import errors
from service.tables import Status, job_events, jobs

Job = Row[Any]


def _with_event(stmt: Insert | Update, detail: dict[str, Any]) -> Select[Any]:
    """`stmt RETURNING jobs.*`, plus an event row for each returned job, in one statement."""
    changed = stmt.returning(*jobs.c).cte("changed")
    event = insert(job_events).from_select(
        ["job_id", "status", "attempt", "worker", "detail"],
        select(
            changed.c.id,
            changed.c.status,
            changed.c.attempt,
            changed.c.worker,
            literal(detail, JSONB),
        ),
    )
    return select(changed).add_cte(event.cte("event"))


# ---------------------------------------------------------------- API side (async)


async def insert_job(
    conn: AsyncConnection,
    *,
    job_id: UUID,
    task: str,
    queue: str,
    args: dict[str, Any],
    timeout_s: int,
    max_attempts: int,
    owner: str,
    meta: dict[str, Any],
) -> Job:
    stmt = insert(jobs).values(
        id=job_id,
        task=task,
        queue=queue,
        args=args,
        status=Status.QUEUED,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        owner=owner,
        meta=meta,
    )
    row: Job = (await conn.execute(_with_event(stmt, {"by": "api"}))).one()
    return row


async def mark_enqueued(conn: AsyncConnection, job_id: UUID) -> Job:
    """Record that RQ holds the job; returns the row as it is now (a worker may be ahead)."""
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(enqueued_at=func.coalesce(jobs.c.enqueued_at, func.now()))
        .returning(*jobs.c)
    )
    row: Job = (await conn.execute(stmt)).one()
    return row


async def get(conn: AsyncConnection, job_id: UUID, owner: str) -> Job:
    stmt = select(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner)
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise errors.JobNotFound(job_id)
    return row


@dataclass(frozen=True)
class ListFilter:
    owner: str
    status: Status | None = None
    task: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def list_jobs(
    conn: AsyncConnection, where: ListFilter, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None on the last)."""
    conds = [jobs.c.owner == where.owner]
    for column, value in (
        (jobs.c.status, where.status),
        (jobs.c.task, where.task),
        (jobs.c.queue, where.queue),
    ):
        if value is not None:
            conds.append(column == value)
    if where.created_after is not None:
        conds.append(jobs.c.created_at > where.created_after)
    if where.created_before is not None:
        conds.append(jobs.c.created_at < where.created_before)
    if cursor is not None:
        conds.append(tuple_(jobs.c.created_at, jobs.c.id) < tuple_(*_decode_cursor(cursor)))
    stmt = (
        select(jobs)
        .where(and_(*conds))
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(limit + 1)
    )
    rows = list((await conn.execute(stmt)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode_cursor(last.created_at, last.id)


def _encode_cursor(created_at: datetime, job_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(job_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return datetime.fromisoformat(created_at), UUID(job_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise errors.CursorInvalid() from exc


async def cancel(conn: AsyncConnection, job_id: UUID, owner: str) -> Job:
    """Cancel a job that has not started; else JobNotFound, JobRunning or JobAlreadyTerminal."""
    stmt = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.owner == owner,
            jobs.c.status.in_([Status.QUEUED, Status.SCHEDULED]),
        )
        .values(status=Status.CANCELED, finished_at=func.now(), updated_at=func.now())
    )
    row: Job | None = (await conn.execute(_with_event(stmt, {"by": "client"}))).one_or_none()
    if row is not None:
        return row
    current = await get(conn, job_id, owner)
    if current.status == Status.STARTED:
        raise errors.JobRunning(job_id)
    raise errors.JobAlreadyTerminal(job_id, current.status)


async def events(conn: AsyncConnection, job_id: UUID, owner: str) -> list[Row[Any]]:
    await get(conn, job_id, owner)
    stmt = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
    return list((await conn.execute(stmt)).all())


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))


# ---------------------------------------------------------------- worker side (sync)

_claimable = or_(
    jobs.c.status == Status.QUEUED,
    and_(jobs.c.status == Status.SCHEDULED, jobs.c.run_at <= func.now()),
)


def claim(conn: Connection, job_id: UUID, worker: str, lease_margin_s: int) -> Job | None:
    """Start the job if it may start (DESIGN invariant 2); None means skip it."""
    lease = (jobs.c.timeout_s + lease_margin_s) * literal_column("interval '1 second'")
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id, _claimable)
        .values(
            status=Status.STARTED,
            attempt=jobs.c.attempt + 1,
            worker=worker,
            started_at=func.now(),
            lease_expires_at=func.now() + lease,
            updated_at=func.now(),
        )
    )
    return conn.execute(_with_event(stmt, {"by": "worker"})).one_or_none()


def _fenced(job_id: UUID, attempt: int) -> Update:
    """An update that only applies to the attempt that is running (DESIGN invariant 3)."""
    return update(jobs).where(
        jobs.c.id == job_id,
        jobs.c.status == Status.STARTED,
        jobs.c.attempt == attempt,
    )


def finish(conn: Connection, job_id: UUID, attempt: int, result: Any) -> Job | None:
    stmt = _fenced(job_id, attempt).values(
        status=Status.FINISHED,
        result=result,
        error=None,
        finished_at=func.now(),
        lease_expires_at=None,
        updated_at=func.now(),
    )
    return conn.execute(_with_event(stmt, {"by": "worker"})).one_or_none()


def fail(conn: Connection, job_id: UUID, attempt: int, error: dict[str, Any]) -> Job | None:
    stmt = _fenced(job_id, attempt).values(
        status=Status.FAILED,
        error=error,
        finished_at=func.now(),
        lease_expires_at=None,
        updated_at=func.now(),
    )
    detail = {"by": "worker", "error": {"type": error["type"], "message": error["message"]}}
    return conn.execute(_with_event(stmt, detail)).one_or_none()
