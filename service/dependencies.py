"""Jobs that wait for jobs (architecture.md, "Dependencies").

A submit names a job's parents (`depends_on`: job ids, or in a batch the `ref`s of its
jobs); `service.recording` commits the jobs with their parents locked, each one starting
`waiting` while a parent is not final (`starting_states`). The ledger releases a waiting
child itself, in the transaction that ends its last parent (the `jobs_release_children`
trigger, migration 0009). What is left to the process that ended the parent is the
hand-over: it enqueues the children released `queued` right after its commit
(`hand_over_children`). If it cannot (Redis refuses, the process dies), the reconciler
delivers them as it does any queued row that Redis lacks.
"""

import dataclasses
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from uuid import UUID, uuid4

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from service import broker, db, errors, outcomes, sql
from service.ledger_writer import LedgerWriter
from service.rows import JobRow, NewJob
from service.schemas import BatchIn
from service.settings import Settings
from service.sql import SyncConnection
from service.tables import TERMINAL, Status

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- what a submit names


def parent_ids(named: Sequence[str], refs: Mapping[str, UUID] | None, cap: int) -> tuple[UUID, ...]:
    """The ids `depends_on` names: job ids, or in a batch the refs of its jobs."""
    if len(named) > cap:
        raise errors.OptionInvalid(
            f"depends_on names {len(named)} jobs, over the limit of {cap} (JOBS_MAX_DEPENDS_ON)"
        )
    ids: list[UUID] = []
    for name in named:
        if refs is not None and name in refs:
            ids.append(refs[name])
            continue
        try:
            ids.append(UUID(name))
        except ValueError:
            where = " nor the ref of a job of this batch" if refs is not None else ""
            raise errors.OptionInvalid(
                f"depends_on: {name[:200]!r} is not a job id{where}"
            ) from None
    if len(set(ids)) < len(ids):
        raise errors.OptionInvalid("depends_on names the same job twice")
    return tuple(ids)


def refs(batch: BatchIn) -> dict[str, UUID]:
    """A new id for each job of the batch that has a ref; refs must be unique and must
    not read as a job id."""
    refs: dict[str, UUID] = {}
    refused = []
    for index, item in enumerate(batch.jobs):
        if item.ref is None:
            continue
        if item.ref in refs:
            refused.append({"index": index, "detail": f"ref {item.ref!r} repeats in the batch"})
        elif _is_uuid(item.ref):
            refused.append({"index": index, "detail": "a ref may not read as a job id"})
        refs[item.ref] = uuid4()
    if refused:
        raise errors.BatchInvalid(refused)
    return refs


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def refuse_cycles(jobs: Sequence[NewJob]) -> None:
    """BatchInvalid naming the jobs of a cycle, if the batch's dependencies make one."""
    index = {job.id: i for i, job in enumerate(jobs)}
    inside = {job.id: [p for p in job.depends_on if p in index] for job in jobs}
    done: set[UUID] = set()
    for start in inside:
        if start in done:
            continue
        path, stack = [start], [iter(inside[start])]  # depth first, without recursion
        while stack:
            parent = next(stack[-1], None)
            if parent is None:
                done.add(path.pop())
                stack.pop()
            elif parent in path:
                cycle = [index[j] for j in path[path.index(parent) :]]
                problem = f"depends_on makes a cycle: jobs {cycle} of the batch"
                raise errors.BatchInvalid([{"index": i, "detail": problem} for i in cycle])
            elif parent not in done:
                path.append(parent)
                stack.append(iter(inside[parent]))


# ---------------------------------------------------------------- recording


def starting_states(jobs: list[NewJob], statuses: Mapping[UUID, str]) -> list[NewJob]:
    """Each job with its count of parents not final and, if a parent failed and its
    policy is `cancel`, the error it is recorded canceled with. Parents are settled before
    their children (a job of the batch recorded canceled is a failed parent too)."""
    status = dict(statuses)
    by_id = {job.id: job for job in jobs}
    children: dict[UUID, list[NewJob]] = {job.id: [] for job in jobs}
    unsettled = {}
    for job in jobs:
        inside = [p for p in job.depends_on if p in by_id]
        unsettled[job.id] = len(inside)
        for parent in inside:
            children[parent].append(job)
    settled: dict[UUID, NewJob] = {}
    next_up = deque(job for job in jobs if not unsettled[job.id])
    while next_up:  # no cycle (refused before): every job is reached
        job = next_up.popleft()
        pending = sum(1 for p in job.depends_on if status[p] not in TERMINAL)
        failed = [p for p in job.depends_on if status[p] in (Status.FAILED, Status.CANCELED)]
        error = None
        if failed and job.on_parent_failure == "cancel":
            why = f"parent job {failed[0]} ended {status[failed[0]]}"
            error = outcomes.error("dependency_failed", why)
        settled[job.id] = dataclasses.replace(job, pending_parents=pending, error=error)
        status[job.id] = Status.CANCELED if error else Status.WAITING
        for child in children[job.id]:
            unsettled[child.id] -= 1
            if not unsettled[child.id]:
                next_up.append(child)
    return [settled[job.id] for job in jobs]


# ---------------------------------------------------------------- the ledger's part


async def lock_parents(conn: AsyncConnection, owner: str, ids: Sequence[UUID]) -> dict[UUID, str]:
    """The owner's jobs among `ids`, marked as parents and locked until the transaction
    ends: each one's status (ids that are not the owner's jobs are left out)."""
    found = await sql.fetch(conn, sql.query("lock_parents"), ids=list(ids), owner=owner)
    return {row["id"]: row["status"] for row in found}


def released_children(conn: SyncConnection, parents: Sequence[UUID]) -> list[JobRow]:
    """Children that the end of `parents` released, not yet handed to RQ."""
    found = sql.rows(conn, sql.query("released_children"), parents=list(parents))
    return [JobRow.of(r) for r in found]


async def released_children_async(conn: AsyncConnection, parents: Sequence[UUID]) -> list[JobRow]:
    """`released_children`, for the API (a cancel releases a `run` child)."""
    found = await sql.fetch(conn, sql.query("released_children"), parents=list(parents))
    return [JobRow.of(r) for r in found]


def parents(conn: SyncConnection, job_id: UUID) -> list[dict[str, object]]:
    """The job's parents (id, task, status, result, error), in its depends_on's order."""
    return [dict(row) for row in sql.rows(conn, sql.query("parents"), id=job_id)]


# ---------------------------------------------------------------- after a parent ends


def ends_a_parent(row: JobRow | None) -> bool:
    """Whether this write ended a job that others wait for."""
    return row is not None and row.has_children and row.status in TERMINAL


def hand_over_children(
    writer: LedgerWriter, redis: Redis, settings: Settings, parent: UUID
) -> None:
    """A worker's hand-over of the children its outcome released; the reconciler is the
    fallback, so a failure here is logged, not raised."""
    try:
        children = writer.write(released_children, [parent]) or []
        sent = broker.enqueue_known(redis, children, settings.result_ttl_s)
        if sent:
            writer.write(_mark_sent, [row.id for row in sent])
    except (RedisError, *db.SYNC_ERRORS) as exc:
        log.warning("job %s: children not handed over (%s); the reconciler will", parent, exc)


def _mark_sent(conn: SyncConnection, ids: list[UUID]) -> None:
    """When RQ took them: the reconciler's delivery check compares it with the time of
    the job at the head of the queue (`service.redelivery`), not the child's creation."""
    sql.run(conn, sql.query("mark_handed_over"), ids=ids)
