"""Unique jobs: a submit that repeats a job of the same key, while that job is recent and
in a status that counts, gets that job back instead of a new one (200, as a repeated
idempotency key does).

A job is unique when its submit (or its task) gives `unique_for_s`. Its key is the
client's `unique_key`, or else its task and canonical args. The statuses that count are
`unique_states`, by default those not final: a job that ended does not stop the next.
Keys are locked for the recording transaction (`_recorded`), so concurrent
duplicates resolve to one row.
"""

import hashlib
import json
from collections.abc import Sequence
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from service import errors, sql
from service.rows import JobRow, JsonObject, NewJob
from service.tables import TERMINAL, Status

NOT_FINAL = tuple(str(s) for s in Status if s not in TERMINAL)


def default_key(task: str, args: JsonObject) -> str:
    """The key of a job that names none: its task and a digest of its canonical args."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{task}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def key_of(
    task: str,
    args: JsonObject,
    unique_for_s: float | None,
    unique_key: str | None,
    unique_states: Sequence[str] | None,
) -> tuple[str | None, tuple[str, ...]]:
    """The job's unique key and the statuses that count (None: not a unique job)."""
    if unique_for_s is None:
        if unique_key is not None or unique_states is not None:
            raise errors.OptionInvalid("unique_key and unique_states need unique_for_s")
        return None, ()
    return unique_key or default_key(task, args), tuple(unique_states or NOT_FINAL)


async def firsts(
    conn: AsyncConnection, jobs: Sequence[NewJob], settled: dict[UUID, JobRow]
) -> dict[UUID, UUID]:
    """Resolve the unique jobs among `jobs` not `settled` already (by an idempotency key):
    one that duplicates a recorded job goes into `settled` as that job; one that repeats
    the key of an earlier new job of the batch is returned, mapped to that job's id."""
    unique = [job for job in jobs if job.unique_key and job.id not in settled]
    if not unique:
        return {}
    wanted = [(job.unique_key or "", job.unique_for_s or 0.0, job.unique_states) for job in unique]
    recorded = await _recorded(conn, unique[0].owner, wanted)
    same_batch: dict[UUID, UUID] = {}
    first_here: dict[str, UUID] = {}
    for n, job in enumerate(unique):
        key = job.unique_key or ""
        if n in recorded:
            settled[job.id] = recorded[n]
        elif key in first_here:
            same_batch[job.id] = first_here[key]
        else:
            first_here[key] = job.id
    return same_batch


async def _recorded(
    conn: AsyncConnection, owner: str, wanted: Sequence[tuple[str, float, Sequence[str]]]
) -> dict[int, JobRow]:
    """For each (unique key, window in seconds, statuses that count), by its index, the
    owner's newest job that makes a new one of that key a duplicate. The keys are locked
    until the transaction ends: of two submits of one key, the second sees the first."""
    keys = [key for key, _, _ in wanted]
    await sql.execute(conn, sql.query("lock_unique_keys"), owner=owner, keys=keys)
    found = await sql.fetch(
        conn,
        sql.query("unique_firsts"),
        owner=owner,
        keys=keys,
        within_s=[within for _, within, _ in wanted],
        states=[",".join(states) for _, _, states in wanted],
    )
    return {row["wanted"] - 1: JobRow.of(row) for row in found}
