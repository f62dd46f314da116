"""Queues as objects: what each one holds and who serves it, and pausing it
(architecture.md, "Paused queues").

A paused queue's jobs stay `queued`. Workers do not pop from it: their queue class
(`pausable`) leaves paused queues out of each dequeue and blocks at most `CHECK_S` at a
time, so a pause or a resume is seen within seconds. And the claim refuses a job of a
paused queue in any case (the ledger decides). A job a worker popped meanwhile (in the
seconds before it saw the pause) is held (`held_by` 'pause'): out of Redis, still
`queued`, an event saying why; the resume releases it and hands it back to RQ, and the
reconciler does the same each pass for what a resume left (a row locked at that instant,
a queue resumed by other means than the API). A job with a concurrency key is released so
only if its key has room; otherwise it is held for its key from then on (`held_by` 'key',
an event saying so), and its key's release hands it back. The state is a ledger row: it
survives restarts of every process, and Redis flushes.
"""

import enum
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

from redis import Redis
from rq.exceptions import DequeueTimeout
from rq.queue import Queue
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from service import broker, db, errors, jsontext, priorities, registry, sql
from service.rows import JobRow
from service.sql import SyncConnection

log = logging.getLogger(__name__)

CHECK_S = 2  # how often a worker looks at the paused queues (and the longest it blocks)


def paused_names(conn: SyncConnection) -> set[str]:
    return {row["name"] for row in sql.rows(conn, sql.query("paused_queues"))}


class Pauses:
    """A worker's view of the paused queues: read from the ledger at most every `CHECK_S`;
    the last one known while the ledger does not answer."""

    def __init__(self, read: Callable[[], set[str]]) -> None:
        self._read = read
        self._paused: frozenset[str] = frozenset()
        self._next = 0.0

    def current(self) -> frozenset[str]:
        if time.monotonic() >= self._next:
            try:
                self._paused = frozenset(self._read())
            except db.SYNC_ERRORS as exc:
                log.warning("paused queues unknown (%s); the last known apply", db.cause(exc))
            self._next = time.monotonic() + CHECK_S
        return self._paused


def pausable(pauses: Pauses, low_share: int) -> type[Queue]:
    """RQ's queue class for a worker that leaves paused queues alone and takes its
    queues' priority lists highest first, but lowest first every `low_share`-th pop (0:
    never; `service.priorities`)."""
    pops = itertools.count(1)

    class PausableQueue(Queue):
        @classmethod
        def dequeue_any(
            cls, queues: Iterable[Queue], timeout: int | None, *args: Any, **kwargs: Any
        ) -> tuple[Any, Queue] | None:
            paused = pauses.current()
            listened = [q for q in queues if priorities.queue_of(q.name) not in paused]
            wait = None if timeout is None else min(timeout, CHECK_S)
            if not listened:  # every queue paused: wait, then look again
                if wait is None:
                    return None
                time.sleep(wait)
                raise DequeueTimeout(wait, [q.key for q in queues])
            if low_share and next(pops) % low_share == 0:
                by_name = {q.name: q for q in listened}
                listened = [by_name[n] for n in priorities.lowest_first(list(by_name))]
            return super().dequeue_any(listened, wait, *args, **kwargs)

        @classmethod
        def lpop(
            cls, queue_keys: Sequence[str], timeout: int | None, connection: Redis | None = None
        ) -> Any:
            """RQ's pop, but one round trip for a non-blocking pop over many lists (RQ
            tries them one by one)."""
            if timeout is not None or len(queue_keys) == 1 or connection is None:
                return super().lpop(queue_keys, timeout, connection=connection)
            found = connection.eval(priorities.POP_FIRST, len(queue_keys), *queue_keys)
            return tuple(found) if found else None

    return PausableQueue


# ---------------------------------------------------------------- jobs a pause holds


class Pause(enum.Enum):
    """What `hold_if_paused` found of a job's queue."""

    HELD = "held"  # paused: the job (if still queued) is held until the resume
    LIFTED = "lifted"  # paused once, not now: the claim may have met a pause lifted since
    NEVER = "never"  # never paused: a pause did not refuse the claim


def hold_if_paused(conn: SyncConnection, job_id: UUID) -> Pause:
    """After a refused claim, in the caller's transaction: hold the job if its queue is
    paused. The queue's state stays locked until the caller's transaction ends, so a
    resume either releases this hold or comes before it (and a claim then sees it)."""
    state = sql.one(conn, sql.query("queue_paused_locked"), id=job_id)
    if state is None:
        return Pause.NEVER
    if not state["paused"]:
        return Pause.LIFTED
    detail = {"by": "worker", "held": f"queue {state['name']!r} paused"}
    sql.rows(conn, sql.query("hold_paused"), id=job_id, detail=jsontext.text(detail))
    return Pause.HELD


def _resumed_details(by: str, name: str | None) -> dict[str, str]:
    """The events of a resume's release: released, or held on for a key with no room."""
    resumed = f"queue {name!r} resumed" if name else "queue resumed"
    return {
        "released": jsontext.text({"by": by, "released": resumed}),
        "held": jsontext.text({"by": by, "held": f"{resumed}; concurrency key at its limit"}),
    }


def release_resumed(conn: SyncConnection) -> list[JobRow]:
    """The reconciler's pass over jobs a pause held whose queue is open again, as a resume
    does (`set_paused`): released (returned, for the caller to enqueue) unless a key with
    no room holds them on."""
    details = _resumed_details("reconciler", None)
    found = sql.rows(conn, sql.query("release_paused"), queue=None, detail=details["released"])
    sql.rows(conn, sql.query("hold_paused_for_key"), queue=None, detail=details["held"])
    return [JobRow.of(row) for row in found]


# ---------------------------------------------------------------- the API's part


def _known(name: str) -> None:
    if name not in registry.queues():
        raise errors.QueueNotFound(name, registry.queues())


async def set_paused(
    conn: AsyncConnection, name: str, paused: bool, by: str
) -> tuple[dict[str, Any], list[JobRow]]:
    """Pause or resume a known queue (QueueNotFound otherwise): its state row, and on a
    resume the jobs its pause held, released in the same transaction, to enqueue: those
    without a concurrency key and those whose key has room; the others are held for their
    key from then on, and say so."""
    _known(name)
    async with sql.transaction(conn):
        row = await sql.fetch_one(conn, sql.query("set_paused"), name=name, paused=paused, by=by)
        assert row is not None
        released = []
        if not paused:
            details = _resumed_details("client", name)
            q = sql.query("release_paused")
            released = await sql.fetch(conn, q, queue=name, detail=details["released"])
            q = sql.query("hold_paused_for_key")
            await sql.fetch(conn, q, queue=name, detail=details["held"])
    return dict(row), [JobRow.of(r) for r in released]


async def overview(conn: AsyncConnection, redis: Redis) -> list[dict[str, Any]]:
    """Each known queue: its jobs waiting (due, by the ledger) and the oldest one's age,
    its jobs running, whether it is paused, its depth in Redis, the workers listening."""
    names = registry.queues()
    states = {r["name"]: r for r in await sql.fetch(conn, sql.query("queue_states"))}
    counts = {r["queue"]: r for r in await sql.fetch(conn, sql.query("queue_census"))}
    depths = await run_in_threadpool(broker.queue_depths, redis, names)
    workers = await run_in_threadpool(broker.workers_listening, redis, names)
    out = []
    for name in names:
        state, count = states.get(name), counts.get(name)
        out.append(
            {
                "name": name,
                "queued": count["queued"] if count else 0,
                "oldest_age_s": max(0.0, count["oldest_s"] or 0.0) if count else 0.0,
                "running": count["running"] if count else 0,
                "paused": bool(state and state["paused"]),
                "paused_at": state["changed_at"] if state and state["paused"] else None,
                "paused_by": state["changed_by"] if state and state["paused"] else None,
                "in_redis": depths[name],
                "workers": workers[name],
            }
        )
    return out
