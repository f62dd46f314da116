"""Shared rate limits of resources: named limiters (`smtp`, `stripe`, one per webhook host)
whose jobs start no faster than the limiter's rate, across every worker and host
(architecture.md, "Rate limits"). Not the API's per-client limit (`service.ratelimit`).

A task names its limiter (`@task(rate_limit="smtp")`, or a function of its args). A
limiter is a row of `rate_limits`: its rate (`JOBS_RATE_LIMITS`, or set by an admin over
the API) and the earliest time its next job may start. The claim of a limited job locks
that row, and starts the job only if that time has come; after the job's `started` event
it moves the time on by 1 / rate, on the clock read after the event, so the ledger never
records two starts of a limiter closer than that. A worker whose job must wait waits (up
to `JOBS_RATE_WAIT_S`) or sends it away as `scheduled` for the limiter's next free slot,
spending no attempt. A task told to slow down raises `RateLimited(retry_after_s)`: its job
is scheduled again without spending an attempt, and its limiter starts nothing for that
long (a limiter without a rate is made for that: it only learns).
"""

import logging
from typing import Any
from uuid import UUID

from rq.job import Job
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from service import errors, jsontext, metrics, registry, sql
from service.ledger_writer import LedgerWriter
from service.rows import JobRow, LimiterRow
from service.settings import LIMITER_NAME, Settings
from service.sql import SyncConnection

log = logging.getLogger(__name__)


def of_payload(job: Job) -> str | None:
    """The limiter of the task an RQ job names, for its args; None: not limited. Read
    before the claim, from the payload: the claim then checks that the payload is the
    recorded job (task and args), so a payload that lies about either does not run."""
    try:
        task = registry.by_function(job.func_name or "")
        if task is None or task.rate_limit is None:
            return None
        return _named(task, dict(job.kwargs))
    except Exception as exc:  # a malformed payload: the claim's checks refuse it
        log.warning("job %s: no limiter read from its payload (%r)", job.id, exc)
        return None


def _named(task: registry.Task, args: dict[str, Any]) -> str | None:
    name = task.rate_limit(args) if callable(task.rate_limit) else task.rate_limit
    if name is not None and not LIMITER_NAME.fullmatch(name):
        log.error("task %s: %r is not a limiter name; not limited", task.name, name)
        return None
    return name


def wait_s(conn: SyncConnection, name: str) -> float:
    """Lock the limiter for this transaction; the seconds until it may start a job."""
    row = sql.one(conn, sql.query("limiter_wait"), name=name)
    return 0.0 if row is None else float(row["wait_s"])


def spend(conn: SyncConnection, name: str) -> None:
    """A job of the limiter started (in this transaction, holding its lock)."""
    sql.run(conn, sql.query("limiter_spend"), name=name)


def defer(conn: SyncConnection, job_id: UUID, name: str) -> JobRow | None:
    """Send the job away to wait for the limiter's next free slot (holding its lock)."""
    slot = sql.one(conn, sql.query("limiter_slot"), name=name)
    assert slot is not None  # the caller holds the row's lock
    detail = {"by": "worker", "rate_limited": f"limiter {name!r} has no start free sooner"}
    row = sql.one(
        conn,
        sql.query("defer_throttled"),
        id=job_id,
        run_at=slot["run_at"],
        detail=jsontext.text(detail),
    )
    return None if row is None else JobRow.of(row)


def back_off(conn: SyncConnection, name: str, retry_after_s: float) -> None:
    """The resource said slow down: the limiter starts nothing for `retry_after_s`."""
    sql.run(conn, sql.query("limiter_back_off"), name=name, retry_after_s=retry_after_s)


def throttled(
    writer: LedgerWriter, row: JobRow, error: dict[str, Any], settings: Settings
) -> JobRow | None:
    """A task told to slow down (RateLimited): its limiter (the one it named, else its
    task's) starts nothing for the wait asked (at most `JOBS_RATE_BACKOFF_MAX_S`), and its
    job is scheduled again after it, no attempt spent. None: not rescheduled (the job was
    throttled `JOBS_MAX_THROTTLED` times, or the attempt no longer runs)."""
    delay_s = min(max(0.0, float(error["retry_after_s"])), settings.rate_backoff_max_s)
    name = error.get("limiter")
    if name is None or not LIMITER_NAME.fullmatch(str(name)):
        name = _named(registry.get(row.task), row.args)
    if name is not None:
        writer.write(back_off, name, delay_s)
        metrics.THROTTLED.labels(name, "backed_off").inc()
    return writer.write(throttle_later, row.id, row.attempt, error, delay_s, settings.max_throttled)


def throttle_later(
    conn: SyncConnection,
    job_id: UUID,
    attempt: int,
    error: dict[str, Any],
    delay_s: float,
    max_throttled: int,
) -> JobRow | None:
    """Schedule the running attempt's job again after `delay_s`, its attempts left as they
    were; None if the attempt no longer runs, or the job was throttled `max_throttled`
    times (then the attempt fails as any other)."""
    row = sql.one(
        conn,
        sql.query("throttle_later"),
        id=job_id,
        attempt=attempt,
        error=jsontext.text(error),
        delay_s=delay_s,
        max_throttled=max_throttled,
        detail=jsontext.text({"by": "worker", "throttled": error["message"]}),
    )
    return None if row is None else JobRow.of(row)


# ---------------------------------------------------------------- rates


async def all_limiters(conn: AsyncConnection) -> list[LimiterRow]:
    return [LimiterRow.of(row) for row in await sql.fetch(conn, sql.query("limiters"))]


async def set_rate(
    conn: AsyncConnection, name: str, per_s: float | None, by: str, settings: Settings
) -> LimiterRow:
    """Give a limiter not declared in `JOBS_RATE_LIMITS` a rate (None: none; it still
    backs off when told to). LimiterDeclared for a declared one: its rate is the config's."""
    if name in settings.rate_limits:
        raise errors.LimiterDeclared(name)
    row = await sql.fetch_one(
        conn, sql.query("limiter_set"), name=name, per_s=per_s, declared=False, by=by
    )
    assert row is not None
    return LimiterRow.of(row)


async def remove(conn: AsyncConnection, name: str, settings: Settings) -> None:
    """Forget a limiter (LimiterNotFound, LimiterDeclared)."""
    if name in settings.rate_limits:
        raise errors.LimiterDeclared(name)
    if await sql.fetch_one(conn, sql.query("limiter_delete"), name=name) is None:
        raise errors.LimiterNotFound(name)


def keep_declared(conn: Connection, settings: Settings) -> None:
    """The limiters of `JOBS_RATE_LIMITS` at their rates; those it no longer names lose
    theirs (the reconciler, once at start)."""
    for name, per_s in settings.rate_limits.items():
        params = {"name": name, "per_s": per_s, "declared": True, "by": "config"}
        sql.run(conn, sql.query("limiter_set"), **params)
    sql.run(conn, sql.query("limiter_undeclare"), names=list(settings.rate_limits))
