"""Every SQL statement about jobs. Each state change is one conditional statement that also
appends its `job_events` row (a data-modifying CTE), so a transition and its history
commit together or not at all.

The API calls the async functions with an `AsyncConnection`; workers call the sync ones
with a `Connection`. Callers own the transaction.
"""

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from sqlalchemy import (
    Connection,
    Insert,
    Row,
    Select,
    Update,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnClause

from service import errors
from service.tables import TERMINAL, Status, job_events, jobs

Job = Row[Any]

_SECOND: ColumnClause[Any] = literal_column("interval '1 second'")


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


@dataclass(frozen=True)
class NewJob:
    id: UUID
    task: str
    queue: str
    args: dict[str, Any]
    timeout_s: int
    max_attempts: int
    backoff_s: float
    owner: str
    meta: dict[str, Any]
    run_at: datetime | None = None  # in the future: the job waits as `scheduled`
    idempotency_key: str | None = None
    request_hash: str | None = None
    callback_url: str | None = None


def _initial_status(job: NewJob) -> Status:
    return Status.SCHEDULED if job.run_at is not None else Status.QUEUED


# Jobs are recorded by one statement of one shape, whatever their number: the columns come
# as arrays and are unnested, so the database prepares it once, nothing is compiled per
# request, and a batch costs one round trip. Each new job gets its `job_events` row in the
# same statement; a job whose owner already used its idempotency key is left out.
_COLUMNS = [
    ("id", "uuid"),
    ("task", "text"),
    ("queue", "text"),
    ("args", "jsonb"),
    ("timeout_s", "int"),
    ("max_attempts", "int"),
    ("backoff_s", "float8"),
    ("owner", "text"),
    ("meta", "jsonb"),
    ("run_at", "timestamptz"),
    ("idempotency_key", "text"),
    ("request_hash", "text"),
    ("callback_url", "text"),
    ("status", "text"),
]


def _insert_sql(placeholder: Callable[[int], str]) -> str:
    """The insert, with `placeholder(n)` for the n-th parameter (from 1)."""
    names = ", ".join(name for name, _ in _COLUMNS)
    arrays = ", ".join(f"{placeholder(n)}::{kind}[]" for n, (_, kind) in enumerate(_COLUMNS, 1))
    detail = placeholder(len(_COLUMNS) + 1)
    return (
        f"WITH changed AS (INSERT INTO jobs ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608 - constant SQL, values bound
        " ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
        " RETURNING *),"
        " event AS (INSERT INTO job_events (job_id, status, attempt, worker, detail)"
        f" SELECT id, status, attempt, worker, {detail}::jsonb FROM changed)"
        " SELECT * FROM changed"
    )


_INSERT_ASYNCPG = _insert_sql(lambda n: f"${n}")
_INSERT_PSYCOPG = _insert_sql(lambda n: "%s")


def _insert_params(batch: list[NewJob], by: str) -> list[Any]:
    """The statement's arrays, one per column, and the events' detail (JSON as text)."""
    rows = [
        (
            job.id, job.task, job.queue, json.dumps(job.args), job.timeout_s, job.max_attempts,
            job.backoff_s, job.owner, json.dumps(job.meta), job.run_at, job.idempotency_key,
            job.request_hash, job.callback_url, str(_initial_status(job)),
        )
        for job in batch
    ]  # fmt: skip
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * len(_COLUMNS)
    return [*columns, json.dumps({"by": by})]


async def insert_jobs(conn: AsyncConnection, batch: list[NewJob]) -> list[Any]:
    """Record new jobs in one statement (its own transaction, unless inside `transaction`);
    those whose idempotency key was used before are left out. Rows come back in no
    particular order, with the job's columns as attributes."""
    records = await (await _driver(conn)).fetch(_INSERT_ASYNCPG, *_insert_params(batch, "api"))
    return [SimpleNamespace(**record) for record in records]


async def insert_job(conn: AsyncConnection, job: NewJob) -> Any | None:
    """`insert_jobs` for one job: None if the owner already used its idempotency key."""
    rows = await insert_jobs(conn, [job])
    return rows[0] if rows else None


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, for the hottest statements."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


def insert_job_sync(conn: Connection, job: NewJob, by: str) -> Job | None:
    """`insert_job` for the synchronous processes (the reconciler's system jobs), in the
    caller's transaction."""
    params = _insert_params([job], by)
    return conn.exec_driver_sql(_INSERT_PSYCOPG, tuple(params)).one_or_none()


@asynccontextmanager
async def transaction(conn: AsyncConnection) -> AsyncIterator[None]:
    """One transaction around the asyncpg statements inside (a batch: all or nothing)."""
    async with (await _driver(conn)).transaction():
        yield


_BY_KEYS = "SELECT * FROM jobs WHERE owner = $1 AND idempotency_key = ANY($2::text[])"


async def by_idempotency_keys(conn: AsyncConnection, owner: str, keys: list[str]) -> list[Any]:
    """The owner's jobs submitted with these idempotency keys."""
    records = await (await _driver(conn)).fetch(_BY_KEYS, owner, keys)
    return [SimpleNamespace(**record) for record in records]


async def by_idempotency_key(conn: AsyncConnection, owner: str, key: str) -> Any:
    [row] = await by_idempotency_keys(conn, owner, [key])
    return row


_MARK_ENQUEUED = """
UPDATE jobs SET enqueued_at = marked.at, updated_at = now()
FROM unnest($1::uuid[], $2::timestamptz[]) AS marked (id, at)
WHERE jobs.id = marked.id AND jobs.enqueued_at IS NULL
"""


async def mark_enqueued(conn: AsyncConnection, job_ids: list[UUID], at: list[datetime]) -> None:
    """Record when RQ took each job, unless a worker's claim recorded it first; one
    statement for them all."""
    await (await _driver(conn)).execute(_MARK_ENQUEUED, job_ids, at)


def _visible(job_id: UUID, owner: str | None) -> Any:
    """The job, if `owner` may see it (None: an admin, who sees every job)."""
    return and_(jobs.c.id == job_id, *([] if owner is None else [jobs.c.owner == owner]))


_GET = "SELECT * FROM jobs WHERE id = $1"
_GET_OWNED = "SELECT * FROM jobs WHERE id = $1 AND owner = $2"


async def get(conn: AsyncConnection, job_id: UUID, owner: str | None) -> Mapping[str, Any]:
    """The job as a mapping of its columns; JobNotFound if `owner` may not see it.

    The hottest read of the service (every poll), so it goes straight to asyncpg: one
    prepared statement, no transaction around it.
    """
    driver = await _driver(conn)
    if owner is None:
        row = await driver.fetchrow(_GET, job_id)
    else:
        row = await driver.fetchrow(_GET_OWNED, job_id, owner)
    if row is None:
        raise errors.JobNotFound(job_id)
    return row  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ListFilter:
    owner: str | None  # None: every owner's jobs (an admin)
    status: Status | None = None
    task: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def list_jobs(
    conn: AsyncConnection, where: ListFilter, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None on the last)."""
    conds = []
    for column, value in (
        (jobs.c.owner, where.owner),
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
        .where(*conds)
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


async def cancel(conn: AsyncConnection, job_id: UUID, owner: str | None) -> tuple[Job, bool]:
    """Cancel a job that is not final; returns the row and whether it was running.

    A running job's outcome is discarded: the worker's fenced write no longer matches.
    """
    current = (
        await conn.execute(select(jobs.c.status).where(_visible(job_id, owner)).with_for_update())
    ).one_or_none()
    if current is None:
        raise errors.JobNotFound(job_id)
    if current.status in TERMINAL:
        raise errors.JobAlreadyTerminal(job_id, current.status, "canceled")
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            status=Status.CANCELED,
            finished_at=func.now(),
            lease_expires_at=None,
            updated_at=func.now(),
        )
    )
    row: Job = (await conn.execute(_with_event(stmt, {"by": "client"}))).one()
    return row, current.status == Status.STARTED


async def retry(conn: AsyncConnection, job_id: UUID, owner: str | None) -> Job:
    """Queue a failed or canceled job again: the next claim is a new attempt, same id."""
    stmt = (
        update(jobs)
        .where(_visible(job_id, owner), jobs.c.status.in_([Status.FAILED, Status.CANCELED]))
        .values(
            status=Status.QUEUED,
            max_attempts=func.greatest(jobs.c.max_attempts, jobs.c.attempt + 1),
            result=None,
            finished_at=None,
            run_at=None,
            lease_expires_at=None,
            enqueued_at=None,
            checked_at=None,
            updated_at=func.now(),
        )
    )
    detail = {"by": "client", "action": "retry"}
    row: Job | None = (await conn.execute(_with_event(stmt, detail))).one_or_none()
    if row is not None:
        return row
    current = await get(conn, job_id, owner)
    raise errors.JobNotRetryable(job_id, current["status"])


async def events(conn: AsyncConnection, job_id: UUID, owner: str | None) -> list[Row[Any]]:
    await get(conn, job_id, owner)
    return await events_after(conn, job_id, 0)


async def events_after(conn: AsyncConnection, job_id: UUID, after_id: int) -> list[Row[Any]]:
    """The job's events newer than event `after_id`, oldest first (the caller checked the
    job is visible)."""
    stmt = (
        select(job_events)
        .where(job_events.c.job_id == job_id, job_events.c.id > after_id)
        .order_by(job_events.c.id)
    )
    return list((await conn.execute(stmt)).all())


async def count_by_status(conn: AsyncConnection) -> dict[str, int]:
    stmt = select(jobs.c.status, func.count()).group_by(jobs.c.status)
    counts = {str(status): 0 for status in Status}
    counts.update({status: n for status, n in (await conn.execute(stmt)).all()})
    return counts


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))


# ---------------------------------------------------------------- worker side (sync)
# A worker's claim and outcome writes run once per job: plain SQL in one statement each,
# sent straight to psycopg (which prepares them after a few runs), so nothing is built or
# compiled per job. The worker runs them in autocommit: one round trip per write.


def _with_event_sql(change: str) -> str:
    """`_with_event` in plain SQL: the UPDATE `change`, its returned row and its event."""
    return (
        f"WITH changed AS ({change} RETURNING *),"  # noqa: S608 - constant SQL, values bound
        " event AS (INSERT INTO job_events (job_id, status, attempt, worker, detail)"
        " SELECT id, status, attempt, worker, %(detail)s FROM changed)"
        " SELECT * FROM changed"
    )


_CLAIM = _with_event_sql(
    "UPDATE jobs SET status = 'started', attempt = attempt + 1, worker = %(worker)s,"
    " started_at = now(), updated_at = now(), enqueued_at = coalesce(enqueued_at, now()),"
    " lease_expires_at = now() + (timeout_s + %(margin)s) * interval '1 second'"
    " WHERE id = %(id)s"
    " AND (status = 'queued' OR (status = 'scheduled' AND run_at <= now()))"
)
# Outcomes: only the attempt that is running may write one (DESIGN invariant 3).
_FINISH = _with_event_sql(
    "UPDATE jobs SET status = 'finished', result = %(result)s, error = NULL,"
    " finished_at = now(), lease_expires_at = NULL, updated_at = now()"
    " WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s"
)
_FAIL = _with_event_sql(
    "UPDATE jobs SET status = 'failed', error = %(error)s,"
    " finished_at = now(), lease_expires_at = NULL, updated_at = now()"
    " WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s"
)
_RETRY_LATER = _with_event_sql(
    "UPDATE jobs SET status = 'scheduled', error = %(error)s,"
    " run_at = now() + %(delay_s)s * interval '1 second', lease_expires_at = NULL,"
    " updated_at = now()"
    " WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s"
    " AND attempt < max_attempts"
)
_WORKER = Jsonb({"by": "worker"})


def _one(conn: Connection, sql: str, params: dict[str, Any]) -> Job | None:
    return conn.exec_driver_sql(sql, params).one_or_none()


def claim(conn: Connection, job_id: UUID, worker: str, lease_margin_s: int) -> Job | None:
    """Start the job if it may start (DESIGN invariant 2); None means skip it."""
    params = {"id": job_id, "worker": worker, "margin": lease_margin_s, "detail": _WORKER}
    return _one(conn, _CLAIM, params)


def finish(conn: Connection, job_id: UUID, attempt: int, result: Any) -> Job | None:
    params = {"id": job_id, "attempt": attempt, "result": Jsonb(result), "detail": _WORKER}
    return _one(conn, _FINISH, params)


def fail(conn: Connection, job_id: UUID, attempt: int, error: dict[str, Any]) -> Job | None:
    detail = Jsonb(_error_detail("worker", error))
    params = {"id": job_id, "attempt": attempt, "error": Jsonb(error), "detail": detail}
    return _one(conn, _FAIL, params)


def retry_later(
    conn: Connection, job_id: UUID, attempt: int, error: dict[str, Any], delay_s: float
) -> Job | None:
    """A failed attempt with attempts left: wait as `scheduled`, keeping its error.
    None when no attempt is left (the caller fails the job instead)."""
    params = {
        "id": job_id,
        "attempt": attempt,
        "error": Jsonb(error),
        "delay_s": delay_s,
        "detail": Jsonb(_error_detail("worker", error)),
    }
    return _one(conn, _RETRY_LATER, params)


def _fenced(job_id: UUID, attempt: int) -> Update:
    """An update that only applies to the attempt that is running (DESIGN invariant 3)."""
    return update(jobs).where(
        jobs.c.id == job_id,
        jobs.c.status == Status.STARTED,
        jobs.c.attempt == attempt,
    )


def progress(
    conn: Connection, job_id: UUID, attempt: int, value: float, message: str | None
) -> Job | None:
    """A running attempt's progress (not a transition: no event)."""
    stmt = (
        _fenced(job_id, attempt)
        .values(progress={"value": value, "message": message}, updated_at=func.now())
        .returning(jobs.c.id)
    )
    return conn.execute(stmt).one_or_none()


def _error_detail(by: str, error: dict[str, Any]) -> dict[str, Any]:
    return {"by": by, "error": {"type": error["type"], "message": error["message"]}}


def job(conn: Connection, job_id: UUID) -> Job | None:
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()


def note(conn: Connection, job_id: UUID, detail: dict[str, Any]) -> None:
    """An event about the job that is not a transition (a callback delivery): it carries the
    job's current status and attempt."""
    event = insert(job_events).from_select(
        ["job_id", "status", "attempt", "detail"],
        select(jobs.c.id, jobs.c.status, jobs.c.attempt, literal(detail, JSONB)).where(
            jobs.c.id == job_id
        ),
    )
    conn.execute(event)


def report(conn: Connection, owner: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per task, for jobs created in [since, until): counts by status, success rate,
    run-time percentiles in seconds."""
    runtime = func.extract("epoch", jobs.c.finished_at - jobs.c.started_at)
    finished = jobs.c.status == Status.FINISHED
    counts = [func.count().filter(jobs.c.status == status).label(str(status)) for status in Status]
    percentiles = [
        func.percentile_cont(q).within_group(runtime).filter(finished).label(f"p{int(q * 100)}_s")
        for q in (0.5, 0.9, 0.99)
    ]
    stmt = (
        select(jobs.c.task, func.count().label("total"), *counts, *percentiles)
        .where(jobs.c.owner == owner, jobs.c.created_at >= since, jobs.c.created_at < until)
        .group_by(jobs.c.task)
        .order_by(jobs.c.task)
    )
    rows = []
    for row in conn.execute(stmt).mappings():
        done = row["finished"] + row["failed"]
        rows.append({**row, "success_rate": round(row["finished"] / done, 4) if done else None})
    return rows


def delete_final(conn: Connection, before: datetime, owner: str | None, limit: int) -> list[UUID]:
    """Delete up to `limit` final jobs (their events go with them) finished before `before`,
    of `owner` (None: every owner); returns their ids."""
    old = select(jobs.c.id).where(
        jobs.c.status.in_(list(TERMINAL)),
        jobs.c.finished_at < before,
        *([] if owner is None else [jobs.c.owner == owner]),
    )
    picked = old.limit(limit).with_for_update(skip_locked=True).scalar_subquery()
    stmt = delete(jobs).where(jobs.c.id.in_(picked)).returning(jobs.c.id)
    return list(conn.execute(stmt).scalars())


# ---------------------------------------------------------------- reconciler side (sync)
# Each statement locks the rows it picks with SKIP LOCKED, so reconcilers can run side by
# side; the caller enqueues the returned rows before committing.

LOST = {"type": "lost", "message": "the worker running this attempt was lost (lease expired)"}


def _pick(where: Any, order_by: Any, limit: int) -> Any:
    return (
        select(jobs.c.id)
        .where(where)
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


def rescue_expired(conn: Connection, limit: int) -> list[Job]:
    """Started rows whose lease expired: queued again while attempts are left, else failed."""
    expired = _pick(
        and_(jobs.c.status == Status.STARTED, jobs.c.lease_expires_at < func.now()),
        jobs.c.lease_expires_at,
        limit,
    )
    again = jobs.c.attempt < jobs.c.max_attempts
    stmt = (
        update(jobs)
        .where(jobs.c.id.in_(expired))
        .values(
            status=case((again, Status.QUEUED), else_=Status.FAILED),
            error=dict(LOST, traceback=None),
            lease_expires_at=None,
            enqueued_at=case((again, func.now()), else_=jobs.c.enqueued_at),
            checked_at=func.now(),
            finished_at=case((again, None), else_=func.now()),
            updated_at=func.now(),
        )
    )
    return list(conn.execute(_with_event(stmt, _error_detail("reconciler", LOST))).all())


CALLBACK_DUE = text(
    "callback_url IS NOT NULL AND status IN ('finished', 'failed', 'canceled')"
    " AND callback_for IS DISTINCT FROM finished_at"
)  # the predicate of ix_jobs_callback_due, word for word, so the index serves it


def callbacks_due(conn: Connection, limit: int) -> list[Job]:
    """Final jobs whose callback is not yet submitted for this finish; each is marked as
    submitted (the caller submits and enqueues the deliveries before committing)."""
    due = _pick(CALLBACK_DUE, jobs.c.finished_at, limit)
    stmt = (
        update(jobs)
        .where(jobs.c.id.in_(due))
        .values(callback_for=jobs.c.finished_at)
        .returning(jobs.c.id, jobs.c.finished_at)
    )
    return list(conn.execute(stmt).all())


def release_due(conn: Connection, limit: int) -> list[Job]:
    """Scheduled rows whose time has come become queued."""
    due = _pick(
        and_(jobs.c.status == Status.SCHEDULED, jobs.c.run_at <= func.now()),
        jobs.c.run_at,
        limit,
    )
    stmt = (
        update(jobs)
        .where(jobs.c.id.in_(due))
        .values(
            status=Status.QUEUED,
            enqueued_at=func.now(),
            checked_at=func.now(),
            updated_at=func.now(),
        )
    )
    return list(conn.execute(_with_event(stmt, {"by": "reconciler"})).all())


def unchecked_queued(conn: Connection, older_than_s: float, limit: int) -> list[Job]:
    """Queued rows not seen in Redis for a while (or never enqueued), locked for checking."""
    last_seen = func.coalesce(jobs.c.checked_at, jobs.c.enqueued_at, jobs.c.created_at)
    stmt = (
        select(jobs)
        .where(jobs.c.status == Status.QUEUED, last_seen < func.now() - older_than_s * _SECOND)
        .order_by(jobs.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(stmt).all())


def mark_checked(conn: Connection, held: list[UUID], redelivered: list[UUID]) -> None:
    """Record a delivery check: held rows were in Redis, redelivered ones enqueued again."""
    if held:
        conn.execute(update(jobs).where(jobs.c.id.in_(held)).values(checked_at=func.now()))
    if redelivered:
        stmt = (
            update(jobs)
            .where(jobs.c.id.in_(redelivered), jobs.c.status == Status.QUEUED)
            .values(enqueued_at=func.now(), checked_at=func.now(), updated_at=func.now())
        )
        conn.execute(_with_event(stmt, {"by": "reconciler", "action": "redelivered"}))
