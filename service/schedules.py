"""Cron schedules, kept in the ledger (architecture.md, "Schedules").

The API creates, reads, changes and deletes a client's schedules. The reconciler fires them
(`fire_due`): in one transaction it locks the schedules with a tick due (SKIP LOCKED, so
each is fired by one reconciler however many run), records a job for each tick to fire —
with the idempotency key `schedule:<id>:<tick>`, so that a tick is one job even if two
passes met it — and moves the schedule to its next tick; the jobs are enqueued once that
commits. What a schedule fires after downtime is its `catch_up` (`service.cron.due`).

Schedules declared in code (`declare`, `service.task_api.schedule`: the service's own
work, such as the retention clean-up) belong to the client `system`; each reconciler keeps
the ledger's copy as the code says (`keep_declared`).
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from service import cron, errors, jsontext, keys, metrics, sql, submit
from service.rows import JobRow, ScheduleRow
from service.schemas import JobIn
from service.settings import Settings
from service.sql import SyncConnection

log = logging.getLogger(__name__)

FIRES_PER_PASS = 100  # ticks of one schedule fired in one pass (catch_up "all")
RECENT = 10  # jobs a schedule remembers
FIELDS = ("name", "cron", "timezone", "task", "args", "queue", "catch_up", "paused")


# ---------------------------------------------------------------- a client's schedules


def check(fields: Mapping[str, Any], settings: Settings, owner: str, now: datetime) -> datetime:
    """OptionInvalid (or TaskUnknown, ArgsInvalid, QueueUnknown) unless the schedule can
    fire jobs of this owner; returns its first tick after `now`."""
    cron.check(fields["cron"], fields["timezone"], settings.schedule_min_interval_s, now)
    spec = JobIn(task=fields["task"], args=fields["args"], queue=fields["queue"])
    submit.prepare(spec, settings, owner, None)  # what a submit of this job would check
    return cron.upcoming(fields["cron"], fields["timezone"], now, 1)[0]


async def _now(conn: AsyncConnection) -> datetime:
    row = await sql.fetch_one(conn, sql.query("now"))
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


async def create(
    conn: AsyncConnection, fields: Mapping[str, Any], settings: Settings, owner: str
) -> ScheduleRow:
    first = check(fields, settings, owner, await _now(conn))
    async with sql.transaction(conn):
        found = await sql.fetch_one(conn, sql.query("count_schedules"), owner=owner)
        if found is not None and found["n"] >= settings.max_schedules:
            raise errors.OptionInvalid(
                f"you have {found['n']} schedules, the most one client may have"
                " (JOBS_MAX_SCHEDULES): delete one first"
            )
        values = {**fields, "args": jsontext.text(fields["args"])}
        row = await sql.fetch_one(
            conn,
            sql.query("insert_schedule"),
            id=uuid4(),
            owner=owner,
            next_fire_at=first,
            **values,
        )
    if row is None:
        raise errors.ScheduleNameTaken(fields["name"])
    return ScheduleRow.of(row)


async def get(conn: AsyncConnection, schedule_id: UUID, owner: str | None) -> ScheduleRow:
    row = await sql.fetch_one(conn, sql.query("get_schedule"), id=schedule_id, owner=owner)
    if row is None:
        raise errors.ScheduleNotFound(schedule_id)
    return ScheduleRow.of(row)


async def listed(conn: AsyncConnection, owner: str | None) -> list[ScheduleRow]:
    return [
        ScheduleRow.of(r) for r in await sql.fetch(conn, sql.query("list_schedules"), owner=owner)
    ]


async def change(
    conn: AsyncConnection,
    schedule_id: UUID,
    owner: str | None,
    changes: Mapping[str, Any],
    settings: Settings,
) -> ScheduleRow:
    """Change some fields. A new cron or time zone, or a resume, starts from the next tick
    after now: the ticks a pause skipped are not fired (catch_up is for downtime)."""
    async with sql.transaction(conn):
        found = await sql.fetch_one(conn, sql.query("lock_schedule"), id=schedule_id, owner=owner)
        if found is None:
            raise errors.ScheduleNotFound(schedule_id)
        row = ScheduleRow.of(found)
        fields = {**{name: getattr(row, name) for name in FIELDS}, **changes}
        first = check(fields, settings, row.owner, await _now(conn))
        moved = any(fields[f] != getattr(row, f) for f in ("cron", "timezone"))
        resumed = row.paused and not fields["paused"]
        values = {**fields, "args": jsontext.text(fields["args"])}
        next_fire_at = first if moved or resumed else row.next_fire_at
        try:
            updated = await sql.fetch_one(
                conn,
                sql.query("update_schedule"),
                id=schedule_id,
                next_fire_at=next_fire_at,
                **values,
            )
        except asyncpg.UniqueViolationError:
            raise errors.ScheduleNameTaken(fields["name"]) from None
    assert updated is not None
    return ScheduleRow.of(updated)


async def delete(conn: AsyncConnection, schedule_id: UUID, owner: str | None) -> None:
    found = await sql.fetch_one(conn, sql.query("delete_schedule"), id=schedule_id, owner=owner)
    if found is None:
        raise errors.ScheduleNotFound(schedule_id)


async def recent_jobs(conn: AsyncConnection, row: ScheduleRow) -> list[dict[str, Any]]:
    """The newest jobs the schedule fired (id, status, scheduled_for, created_at), newest
    first; those deleted by retention are left out."""
    found = await sql.fetch(conn, sql.query("schedule_jobs"), ids=row.recent_jobs)
    by_id = {r["id"]: r for r in found}
    return [
        {
            "id": job_id,
            "status": by_id[job_id]["status"],
            "scheduled_for": by_id[job_id]["meta"].get("scheduled_for"),
            "created_at": by_id[job_id]["created_at"],
        }
        for job_id in row.recent_jobs
        if job_id in by_id
    ]


# ---------------------------------------------------------------- the reconciler's part


def fire_due(conn: Connection, settings: Settings, limit: int) -> list[JobRow]:
    """Fire the ticks due of up to `limit` schedules, in the caller's transaction; returns
    the new jobs, for the caller to enqueue after its commit."""
    fired: list[JobRow] = []
    for found in sql.rows(conn, sql.query("due_schedules"), limit=limit):
        row = ScheduleRow.of(found)
        try:
            ticks, next_fire_at = cron.due(
                row.cron,
                row.timezone,
                row.next_fire_at,
                found["db_now"],
                row.catch_up,
                settings.schedule_grace_s,
                FIRES_PER_PASS,
            )
        except (errors.OptionInvalid, ValueError) as exc:  # a time zone gone from tzdata
            log.error("schedule %s (%s): cannot tell its ticks: %s", row.id, row.name, exc)
            continue
        quota = settings.fair_quota(row.owner)
        jobs = [job for tick in ticks if (job := _job(row, tick, quota)) is not None]
        created = submit.record_sync(conn, jobs, "scheduler") if jobs else []
        newest = sorted(created, key=lambda job: str(job.meta["scheduled_for"]), reverse=True)
        sql.run(
            conn,
            sql.query("fired"),
            id=row.id,
            next_fire_at=next_fire_at,
            last_fired_at=max(ticks) if ticks else None,
            jobs=[job.id for job in newest][:RECENT],
        )
        metrics.SCHEDULE_FIRES.labels("fired").inc(len(created))
        fired += created
    return fired


def _job(row: ScheduleRow, tick: datetime, fair_quota: int) -> Any:
    """The job of one tick, as its owner's; None (logged) if it can no longer be made."""
    try:
        return submit.system_job(
            row.task,
            row.args,
            owner=row.owner,
            queue=row.queue,
            idempotency_key=f"schedule:{row.id}:{tick.isoformat()}",
            fair_quota=fair_quota,
            meta={
                "schedule": row.name,
                "schedule_id": str(row.id),
                "scheduled_for": tick.isoformat(),
            },
        )
    except errors.JobServiceError as exc:
        log.error("schedule %s (%s): tick %s not fired: %s", row.id, row.name, tick, exc)
        metrics.SCHEDULE_FIRES.labels("refused").inc()
        return None


# ---------------------------------------------------------------- schedules declared in code


@dataclass(frozen=True)
class Declared:
    name: str
    cron: str | Callable[[Settings], str]  # or read from the settings
    task: str
    args: dict[str, Any]
    timezone: str
    queue: str | None
    catch_up: str


_declared: dict[str, Declared] = {}


def declare(
    name: str,
    cron: str | Callable[[Settings], str],
    task: str,
    args: dict[str, Any] | None = None,
    *,
    timezone: str = "UTC",
    queue: str | None = None,
    catch_up: str = "latest",
) -> None:
    """A schedule the service keeps as the client `system` (call it at import, in a task
    module): `cron` in `timezone`, firing `task` with `args`."""
    _declared[name] = Declared(name, cron, task, dict(args or {}), timezone, queue, catch_up)


def keep_declared(conn: SyncConnection, settings: Settings) -> None:
    """Make the ledger's system schedules those the code declares (in the caller's
    transaction): new ones added, changed ones updated, others deleted."""
    now = sql.one(conn, sql.query("now"))
    assert now is not None
    for d in _declared.values():
        expr = d.cron(settings) if callable(d.cron) else d.cron
        sql.run(
            conn,
            sql.query("declare_schedule"),
            id=uuid4(),
            owner=keys.SYSTEM_CLIENT,
            name=d.name,
            cron=expr,
            timezone=d.timezone,
            task=d.task,
            args=jsontext.text(d.args),
            queue=d.queue,
            catch_up=d.catch_up,
            next_fire_at=cron.upcoming(expr, d.timezone, now["now"], 1)[0],
        )
    gone = sql.rows(
        conn, sql.query("forget_undeclared"), owner=keys.SYSTEM_CLIENT, names=list(_declared)
    )
    for row in gone:
        log.info("schedule %s: no longer declared, deleted", row["name"])
