"""Jobs whose recording takes a transaction of their own, all or nothing: jobs with
parents (`service.dependencies`: the parents are locked, and a job starts `waiting` while
one is not final) and unique jobs (`service.uniqueness`: the keys are locked, and a
duplicate is the job it repeats). Any other job is recorded by one plain insert
(`service.submit`), and costs no more for these.
"""

import dataclasses
from collections import Counter
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from service import dependencies, errors, ledger, metrics, sql, uniqueness
from service.rows import JobRow, NewJob


def needed(jobs: list[NewJob]) -> bool:
    """Whether these jobs must be recorded here."""
    return any(job.depends_on or job.unique_key for job in jobs)


async def record(conn: AsyncConnection, jobs: list[NewJob]) -> list[tuple[JobRow, bool]]:
    """Commit the jobs, all or nothing; for each (in order) its row and whether it is new.
    A job whose idempotency key was used before is that first job, and a unique job that
    repeats a recorded one (or an earlier one of the batch) is that job: children that
    name it depend on that job. Parents outside the batch must be the owner's."""
    owner = jobs[0].owner
    async with sql.transaction(conn):
        settled = await _firsts(conn, jobs)
        repeats = await uniqueness.firsts(conn, jobs, settled)
        alias = {job_id: row.id for job_id, row in settled.items()} | repeats
        fresh = [
            dataclasses.replace(job, depends_on=tuple(alias.get(p, p) for p in job.depends_on))
            for job in jobs
            if job.id not in alias
        ]
        fresh_ids = {job.id for job in fresh}
        named = {p for job in fresh for p in job.depends_on}
        outside = sorted(named - fresh_ids)
        statuses = await dependencies.lock_parents(conn, owner, outside) if outside else {}
        if unknown := [p for p in outside if p not in statuses]:
            raise errors.ParentsUnknown(unknown)
        ready = dependencies.starting_states(fresh, statuses)
        created = await ledger.insert_jobs(conn, ready)
        if len(created) < len(ready):  # another request took a key since `_firsts`
            raise errors.SubmittedConcurrently()
        if inside := sorted(named & fresh_ids):
            await dependencies.lock_parents(conn, owner, inside)
    by_id = {row.id: row for row in created}
    for task_name, n in Counter(row.task for row in created).items():
        metrics.SUBMITTED.labels(task_name).inc(n)
    return [
        (settled[job.id], False)
        if job.id in settled
        else (by_id[repeats[job.id]], False)
        if job.id in repeats
        else (by_id[job.id], True)
        for job in jobs
    ]


async def _firsts(conn: AsyncConnection, jobs: list[NewJob]) -> dict[UUID, JobRow]:
    """By the id each job was prepared with, the recorded job of its idempotency key, if
    the key was used before (IdempotencyKeyReused if for a different request)."""
    recorded = await ledger.first_jobs(conn, [job for job in jobs if job.idempotency_key])
    firsts: dict[UUID, JobRow] = {}
    for job in jobs:
        first = recorded.get((job.owner, job.idempotency_key or ""))
        if first is None or not job.idempotency_key:
            continue
        if first.request_hash != job.request_hash:
            raise errors.IdempotencyKeyReused(job.idempotency_key, first.id)
        firsts[job.id] = first
    return firsts
