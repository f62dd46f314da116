"""Bulk operations: cancel or retry every job that `GET /jobs`' filters select, up to a
cap a call, or only count them and show a sample (`dry_run`).

Each is one statement over the oldest matching jobs (rows locked with SKIP LOCKED, so two
bulk calls never change a job twice), and every job it changes gets its event naming the
operation (`detail.bulk`). After the commit, as a single cancel or retry does: a canceled
running job is stopped on its worker, the children its end released and the retried jobs
are handed to RQ.
"""

from typing import Any
from uuid import uuid4

from redis import Redis
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from service import broker, dependencies, errors, jsontext, listing, sql, submit
from service.enqueued import EnqueuedMarks
from service.rows import JobRow
from service.settings import Settings
from service.tables import TERMINAL

SAMPLE = 10
_ELIGIBLE = {"cancel": "bulk_cancelable", "retry": "bulk_retryable"}
_CHANGE = {"cancel": "bulk_cancel", "retry": "bulk_retry"}


async def run(
    conn: AsyncConnection,
    redis: Redis,
    marks: EnqueuedMarks,
    settings: Settings,
    action: str,
    where: listing.ListFilter,
    limit: int,
    dry_run: bool,
) -> dict[str, Any]:
    """`{operation, action, dry_run, matched, affected, sample}`: the jobs that match (all
    of them, counted), those changed (none on a dry run), and some of them."""
    if limit > settings.bulk_limit:
        raise errors.OptionInvalid(
            f"limit {limit} is over the maximum of {settings.bulk_limit} (JOBS_BULK_LIMIT)"
        )
    if action == "cancel" and where.status in TERMINAL:
        raise errors.OptionInvalid(f"{where.status} jobs are final: there is nothing to cancel")
    if (
        action == "retry"
        and where.status is not None
        and where.status not in ("failed", "canceled")
    ):
        raise errors.OptionInvalid("only failed or canceled jobs can be retried")
    q, params = listing.query(_ELIGIBLE[action], where)
    found = await sql.fetch(conn, q, sample=SAMPLE, **params)
    matched = found[0]["matched"] if found else 0
    operation = uuid4().hex[:16]
    out = {"operation": operation, "action": action, "dry_run": dry_run, "matched": matched}
    if dry_run:
        return {**out, "affected": 0, "sample": [JobRow.of(row) for row in found]}
    q, params = listing.query(_CHANGE[action], where)
    detail = jsontext.text({"by": "client", "action": action, "bulk": operation})
    found = await sql.fetch(conn, q, limit=limit, detail=detail, **params)
    changed = [JobRow.of(row) for row in found]
    if action == "cancel":
        await _after_cancel(conn, redis, marks, settings, changed)
    else:
        changed = await submit.hand_over(redis, marks, settings, changed)
    return {**out, "affected": len(changed), "sample": changed[:SAMPLE]}


async def _after_cancel(
    conn: AsyncConnection,
    redis: Redis,
    marks: EnqueuedMarks,
    settings: Settings,
    canceled: list[JobRow],
) -> None:
    """Stop the canceled jobs that were running (they kept their lease) and hand the
    children their end released to RQ."""
    for row in canceled:
        if row.lease_expires_at is not None:
            await run_in_threadpool(broker.stop, redis, row.id, row.worker)
    parents = [row.id for row in canceled if row.has_children]
    if parents:
        released = await dependencies.released_children_async(conn, parents)
        await submit.hand_over(redis, marks, settings, released)
