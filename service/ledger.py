"""The ledger: every read and write of jobs and their events, as typed Python calls.

The statements themselves are in `queries.sql`. The API calls the `async` functions with an
`AsyncConnection` (asyncpg); workers, the reconciler and tasks call the others with a
`SyncConnection` (psycopg, bare or under SQLAlchemy). Callers own the transaction: the
worker writes in autocommit, one round trip per statement; the reconciler commits only
after Redis took what it picked.
Every function returns `JobRow`s (or `EventRow`s), whichever driver read them. Listing
with filters and cursors is `service.listing`; the statements of dependencies and unique
jobs are with them, in `service.dependencies` and `service.uniqueness`.
"""

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from service import errors, jsontext, sql
from service.rows import CallbackDue, EventRow, JobRow, JsonObject, NewJob
from service.sql import SyncConnection
from service.tables import TERMINAL, Status

HOST = socket.gethostname()  # a worker's host, in its claims' events


def storable(text: str, limit: int, *, ends: bool = False) -> str:
    """`text` as the ledger can keep it in JSON: NUL and lone surrogates replaced, at most
    `limit` characters: its start, or with `ends` its start and its end (a traceback)."""
    clean = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(clean) <= limit:
        return clean
    if not ends:
        return clean[:limit]
    cut = f"\n[... {len(clean) - limit} characters cut ...]\n"
    head = limit // 4
    return clean[:head] + cut + clean[len(clean) - (limit - head - len(cut)) :]


def _jobs(found: Sequence[sql.Record]) -> list[JobRow]:
    return [JobRow.of(row) for row in found]


def _many(conn: SyncConnection, name: str, **params: object) -> list[JobRow]:
    """The rows a named statement returns, on a synchronous connection."""
    return _jobs(sql.rows(conn, sql.query(name), **params))


def _by(actor: str, error: Mapping[str, object] | None = None, **more: object) -> str:
    """An event's detail: who made the change, and the error's type and message if any."""
    detail: JsonObject = {"by": actor, **more}
    if error is not None:
        detail["error"] = {"type": error["type"], "message": error["message"]}
    return jsontext.text(detail)


# ---------------------------------------------------------------- recording new jobs


def _insert_params(batch: list[NewJob], actor: str) -> dict[str, object]:
    """`insert_jobs`'s arrays, one per column, and the events' detail."""
    return {
        "id": [job.id for job in batch],
        "task": [job.task for job in batch],
        "queue": [job.queue for job in batch],
        "args": [jsontext.text(job.args) for job in batch],
        "timeout_s": [job.timeout_s for job in batch],
        "max_attempts": [job.max_attempts for job in batch],
        "backoff_s": [job.backoff_s for job in batch],
        "owner": [job.owner for job in batch],
        "meta": [jsontext.text(job.meta) for job in batch],
        "run_at": [job.run_at for job in batch],
        "delay_s": [job.delay_s for job in batch],
        "idempotency_key": [job.idempotency_key for job in batch],
        "request_hash": [job.request_hash for job in batch],
        "callback_url": [job.callback_url for job in batch],
        "trace_context": [job.trace_context for job in batch],
        "depends_on": [",".join(map(str, job.depends_on)) or None for job in batch],
        "pending_parents": [job.pending_parents for job in batch],
        "on_parent_failure": [job.on_parent_failure for job in batch],
        "error": [None if job.error is None else jsontext.text(job.error) for job in batch],
        "unique_key": [job.unique_key for job in batch],
        "concurrency_key": [job.concurrency_key for job in batch],
        "max_concurrency": [job.max_concurrency for job in batch],
        "priority": [job.priority for job in batch],
        "fair_quota": [job.fair_quota for job in batch],
        "detail": _by(actor),
    }


async def insert_jobs(conn: AsyncConnection, batch: list[NewJob]) -> list[JobRow]:
    """Record new jobs in one statement; those whose idempotency key was used before are
    left out. Rows come back in no particular order."""
    return _jobs(await sql.fetch(conn, sql.query("insert_jobs"), **_insert_params(batch, "api")))


def insert_jobs_sync(conn: SyncConnection, batch: list[NewJob], actor: str) -> list[JobRow]:
    """`insert_jobs` for the synchronous processes (the reconciler's system jobs)."""
    return _many(conn, "insert_jobs", **_insert_params(batch, actor))


async def by_idempotency_keys(conn: AsyncConnection, owner: str, keys: list[str]) -> list[JobRow]:
    """The owner's jobs submitted with these idempotency keys."""
    return _jobs(await sql.fetch(conn, sql.query("by_idempotency_keys"), owner=owner, keys=keys))


async def first_jobs(
    conn: AsyncConnection, jobs: Sequence[NewJob]
) -> dict[tuple[str, str], JobRow]:
    """The recorded jobs of these jobs' idempotency keys, by (owner, key)."""
    firsts: dict[tuple[str, str], JobRow] = {}
    for owner in {job.owner for job in jobs if job.idempotency_key}:
        keys_ = [job.idempotency_key or "" for job in jobs if job.owner == owner]
        for row in await by_idempotency_keys(conn, owner, keys_):
            firsts[(owner, row.idempotency_key or "")] = row
    return firsts


async def mark_enqueued(conn: AsyncConnection, job_ids: list[UUID], at: list[datetime]) -> None:
    """Record when RQ took each job, unless a worker's claim recorded it first."""
    await sql.execute(conn, sql.query("mark_enqueued"), ids=job_ids, at=at)


# ---------------------------------------------------------------- the API's reads and changes


async def get(conn: AsyncConnection, job_id: UUID, owner: str | None) -> JobRow:
    """The job; JobNotFound if `owner` may not see it (None: an admin, who sees every job)."""
    row = await sql.fetch_one(conn, sql.query("get_job"), id=job_id, owner=owner)
    if row is None:
        raise errors.JobNotFound(job_id)
    return JobRow.of(row)


async def cancel(conn: AsyncConnection, job_id: UUID, owner: str | None) -> tuple[JobRow, bool]:
    """Cancel a job that is not final (in one transaction); returns the row and whether it
    was running. A running job's outcome is then discarded: its fenced write no longer
    matches."""
    async with sql.transaction(conn):
        current = await sql.fetch_one(conn, sql.query("lock_status"), id=job_id, owner=owner)
        if current is None:
            raise errors.JobNotFound(job_id)
        if current["status"] in TERMINAL:
            raise errors.JobAlreadyTerminal(job_id, current["status"], "canceled")
        row = await sql.fetch_one(conn, sql.query("cancel"), id=job_id, detail=_by("client"))
    assert row is not None
    return JobRow.of(row), current["status"] == Status.STARTED


async def retry(conn: AsyncConnection, job_id: UUID, owner: str | None) -> JobRow:
    """Queue a failed or canceled job again: the next claim is a new attempt, same id."""
    detail = _by("client", action="retry")
    row = await sql.fetch_one(conn, sql.query("retry"), id=job_id, owner=owner, detail=detail)
    if row is not None:
        return JobRow.of(row)
    current = await get(conn, job_id, owner)
    if current.status in (Status.FAILED, Status.CANCELED):  # held back by a live lease
        raise errors.AttemptStillRunning(job_id)
    raise errors.JobNotRetryable(job_id, current.status)


async def events(conn: AsyncConnection, job_id: UUID, owner: str | None) -> list[EventRow]:
    await get(conn, job_id, owner)
    return await events_after(conn, job_id, 0)


async def events_after(conn: AsyncConnection, job_id: UUID, after_id: int) -> list[EventRow]:
    """The job's events newer than event `after_id`, oldest first (the caller checked the
    job is visible)."""
    found = await sql.fetch(conn, sql.query("events_after"), job_id=job_id, after=after_id)
    return [EventRow.of(row) for row in found]


async def watched(
    conn: AsyncConnection, job_id: UUID, owner: str | None, after_id: int
) -> tuple[JobRow, list[EventRow]]:
    """The job and its events newer than `after_id`, as of one moment: a stream's read,
    whose events must agree with the job's status (a transition committed between two
    reads would otherwise show as an event beside the state before it)."""
    async with sql.snapshot(conn):
        return await get(conn, job_id, owner), await events_after(conn, job_id, after_id)


async def ping(conn: AsyncConnection) -> None:
    await sql.execute(conn, sql.query("ping"))


# ---------------------------------------------------------------- a worker's writes


def _one(conn: SyncConnection, name: str, **params: object) -> JobRow | None:
    row = sql.one(conn, sql.query(name), **params)
    return None if row is None else JobRow.of(row)


def claim(
    conn: SyncConnection,
    job_id: UUID,
    worker: str,
    lease_s: int,
    token: str = "",
    locked_key: str | None = None,
) -> JobRow | None:
    """Start the job if it may start (architecture.md, "The row is the lock"), holding a
    lease of `lease_s`, for the delivery named `token`; None: skip it. A job with a
    concurrency key starts only if the caller holds that key's lock (`locked_key`,
    `service.concurrency`). Its `started` event names the worker's host and process
    (`detail.host`, `detail.pid`), whatever the worker's name."""
    return _one(
        conn,
        "claim",
        id=job_id,
        worker=worker,
        lease_s=lease_s,
        token=token,
        locked_key=locked_key,
        detail=_by("worker", host=HOST, pid=os.getpid()),
    )


def reclaim(conn: SyncConnection, job_id: UUID, token: str) -> JobRow | None:
    """The job, if the delivery named `token` already claimed it (a claim whose answer was
    lost); None otherwise."""
    return _one(conn, "reclaim", id=job_id, token=token)


def renew_lease(conn: SyncConnection, job_id: UUID, attempt: int, lease_s: int) -> bool:
    """Extend the running attempt's lease to `lease_s` from now; False if this attempt no
    longer runs (canceled, rescued, finished)."""
    q = sql.query("renew_lease")
    return sql.one(conn, q, id=job_id, attempt=attempt, lease_s=lease_s) is not None


def release_lease(conn: SyncConnection, job_id: UUID, attempt: int) -> bool:
    """Say that `attempt`, whose job was taken from it (canceled), has stopped: a retry
    need not wait for its lease. False if there was nothing to release."""
    q = sql.query("release_lease")
    return sql.one(conn, q, id=job_id, attempt=attempt) is not None


def finish(conn: SyncConnection, job_id: UUID, attempt: int, result: object) -> JobRow | None:
    """The running attempt finished with `result`; None if this attempt no longer runs
    (architecture.md, "Fenced writes")."""
    return _one(
        conn,
        "finish",
        id=job_id,
        attempt=attempt,
        result=jsontext.text(result),
        detail=_by("worker"),
    )


def fail(
    conn: SyncConnection, job_id: UUID, attempt: int, error: Mapping[str, object]
) -> JobRow | None:
    """The running attempt failed for good."""
    detail = _by("worker", error)
    return _one(conn, "fail", id=job_id, attempt=attempt, error=jsontext.text(error), detail=detail)


def retry_later(
    conn: SyncConnection, job_id: UUID, attempt: int, error: Mapping[str, object], delay_s: float
) -> JobRow | None:
    """A failed attempt with attempts left: wait as `scheduled`, keeping its error.
    None when no attempt is left (the caller fails the job instead)."""
    return _one(
        conn,
        "retry_later",
        id=job_id,
        attempt=attempt,
        error=jsontext.text(error),
        delay_s=delay_s,
        detail=_by("worker", error),
    )


def progress(
    conn: SyncConnection, job_id: UUID, attempt: int, value: float, message: str | None
) -> bool:
    """A running attempt's progress (not a transition: no event); False if it no longer
    runs."""
    report = jsontext.text({"value": value, "message": message})
    found = sql.one(conn, sql.query("progress"), id=job_id, attempt=attempt, progress=report)
    return found is not None


# ---------------------------------------------------------------- what tasks read and change


def job(conn: SyncConnection, job_id: UUID) -> JobRow | None:
    return _one(conn, "get_job", id=job_id, owner=None)


def note(conn: SyncConnection, job_id: UUID, detail: Mapping[str, object]) -> None:
    """An event about the job that is not a transition (a callback delivery): it carries the
    job's current status and attempt."""
    sql.rows(conn, sql.query("note"), id=job_id, detail=jsontext.text(detail))


STATS_COLUMNS = [
    "task", "total", *[str(s) for s in Status], "success_rate", "p50_s", "p90_s", "p99_s",
]  # fmt: skip


def task_stats(
    conn: SyncConnection, owner: str, since: datetime, until: datetime
) -> list[dict[str, object]]:
    """Per task (STATS_COLUMNS), for the owner's jobs created in [since, until): counts by
    status, success rate, run-time percentiles in seconds."""
    found = sql.rows(conn, sql.query("task_stats"), owner=owner, since=since, until=until)
    stats: list[dict[str, object]] = []
    for row in found:
        done = row["finished"] + row["failed"]
        rate = round(row["finished"] / done, 4) if done else None
        stats.append({**row, "success_rate": rate})
    return stats


def delete_final(
    conn: SyncConnection, before: datetime, owner: str | None, limit: int
) -> list[UUID]:
    """Delete up to `limit` final jobs (their events go with them) finished before `before`,
    of `owner` (None: every owner); returns their ids."""
    found = sql.rows(conn, sql.query("delete_final"), before=before, owner=owner, limit=limit)
    return [row["id"] for row in found]


# ---------------------------------------------------------------- the reconciler's repairs

LOST = {
    "type": "lost",
    "message": "the worker running this attempt was lost (lease expired)",
    "traceback": None,
}


def rescue_expired(conn: SyncConnection, limit: int) -> list[JobRow]:
    """Started rows whose lease expired: queued again while attempts are left, else failed."""
    detail = _by("reconciler", LOST)
    return _many(conn, "rescue_expired", error=jsontext.text(LOST), limit=limit, detail=detail)


def release_due(conn: SyncConnection, limit: int) -> list[JobRow]:
    """Scheduled rows whose time has come become queued."""
    return _many(conn, "release_due", limit=limit, detail=_by("reconciler"))


def unchecked_queued(conn: SyncConnection, older_than_s: float, limit: int) -> list[JobRow]:
    """Queued rows not seen in Redis for a while (or never enqueued), locked for checking."""
    return _many(conn, "unchecked_queued", older_than_s=older_than_s, limit=limit)


def enqueued_at(conn: SyncConnection, ids: list[UUID]) -> dict[UUID, datetime]:
    """When each of these rows was last handed to Redis (ids not in the ledger left out)."""
    found = sql.rows(conn, sql.query("enqueued_at"), ids=ids)
    return {row["id"]: row["at"] for row in found}


def mark_checked(conn: SyncConnection, held: list[UUID], redelivered: list[UUID]) -> None:
    """Record a delivery check: held rows were in Redis, redelivered ones enqueued again."""
    if held:
        sql.run(conn, sql.query("mark_held"), ids=held)
    if redelivered:
        detail = _by("reconciler", action="redelivered")
        sql.rows(conn, sql.query("mark_redelivered"), ids=redelivered, detail=detail)


def callbacks_due(conn: SyncConnection, limit: int) -> list[CallbackDue]:
    """Final jobs whose callback is not yet submitted for this finish; each is marked as
    submitted (the caller submits the deliveries before committing)."""
    found = sql.rows(conn, sql.query("callbacks_due"), limit=limit)
    return [CallbackDue(row["id"], row["finished_at"], row["trace_context"]) for row in found]
