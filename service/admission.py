"""Whether a job a worker popped may start now, and the claim that starts it
(architecture.md, "The row is the lock").

Besides the row itself, three things may stand in a job's way, each decided in the
claim's transaction: its limiter has no start free yet (`service.limiters`: the worker
waits for it, up to `JOBS_RATE_WAIT_S`, or sends the job away as `scheduled` for the
limiter's next free slot), its concurrency key is at its limit (`service.concurrency`: the
job is held), or its queue is paused (`service.queues`: the job is held until the resume).
None spends an attempt. A job with neither a key nor a limiter is claimed by one
statement; a refused claim costs one transaction more, to hold it if its queue is paused.
"""

import logging
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

from rq.job import Job

from service import broker, jsontext, ledger, limiters, metrics, outcomes, queues, sql
from service.ledger_writer import LedgerWriter
from service.rows import JobRow
from service.settings import Settings
from service.sql import SyncConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wait:
    """The job's limiter may start it in `seconds`."""

    seconds: float


def admit(writer: LedgerWriter, job: Job, worker: str, settings: Settings) -> JobRow | None:
    """The started row if this job may run here now, else None: skip it (canceled, running
    elsewhere, a duplicate delivery, not one of ours, held, or sent away to wait)."""
    try:
        job_id = UUID(job.id)
    except ValueError:
        log.warning("job %s is not a ledger job; skipping it", job.id)
        return None
    limiter = limiters.of_payload(job)
    token = uuid4().hex  # this delivery
    deadline = time.monotonic() + settings.rate_wait_s
    tries = 0

    def claim(conn: SyncConnection) -> JobRow | Wait | None:
        nonlocal tries
        tries += 1
        if tries > 1:  # the first try may have been applied, its answer lost
            mine = ledger.reclaim(conn, job_id, token)
            if mine is not None:
                return mine
        may_wait_s = deadline - time.monotonic()
        return _claim(conn, job, job_id, limiter, worker, settings.lease_s, token, may_wait_s)

    while True:
        tries = 0
        found = writer.write(claim)
        if not isinstance(found, Wait):
            break
        metrics.THROTTLED.labels(limiter, "waited").inc()
        time.sleep(found.seconds)
    if found is None:
        log.info("job %s skipped: the ledger does not let it start here", job.id)
        return None
    mismatch = outcomes.payload_mismatch(job, found)
    if mismatch is not None:
        log.error("job %s not run: %s", job.id, mismatch)
        error = outcomes.error("payload_mismatch", mismatch, permanent=True)
        writer.write(ledger.fail, job_id, found.attempt, error)
        return None
    return found


def _claim(
    conn: SyncConnection,
    job: Job,
    job_id: UUID,
    limiter: str | None,
    worker: str,
    lease_s: int,
    token: str,
    may_wait_s: float,
) -> JobRow | Wait | None:
    """`ledger.claim`, behind the job's limiter and under its concurrency key's lock (the
    key is in the RQ job's meta: a payload that lies about it is refused by the claim)."""
    key = (job.meta or {}).get(broker.CONCURRENCY_META)
    if not key and not limiter:
        row = ledger.claim(conn, job_id, worker, lease_s, token)
        if row is None:
            with conn.transaction():  # type: ignore[union-attr]
                row = _hold_or_claim_again(conn, job_id, None, worker, lease_s, token)
        return row
    with conn.transaction():  # type: ignore[union-attr]
        if limiter:
            wait_s = limiters.wait_s(conn, limiter)  # the limiter's lock, first
            if wait_s > 0 and wait_s <= may_wait_s:
                return Wait(wait_s)
            if wait_s > 0:
                if limiters.defer(conn, job_id, limiter) is not None:
                    metrics.THROTTLED.labels(limiter, "deferred").inc()
                return None
        if key:
            sql.run(conn, sql.query("lock_concurrency_key"), key=key)
        row = ledger.claim(conn, job_id, worker, lease_s, token, locked_key=key)
        if row is None:
            row = _hold_or_claim_again(conn, job_id, key, worker, lease_s, token)
        if row is not None and limiter:
            limiters.spend(conn, limiter)
    return row


def _hold_or_claim_again(
    conn: SyncConnection, job_id: UUID, key: str | None, worker: str, lease_s: int, token: str
) -> JobRow | None:
    """After a refused claim, in its transaction (with the key's lock, for a keyed job):
    the job is held if its queue is paused. A queue paused once but not now may have been
    resumed since the claim met its pause (a resume releases only held jobs), so the claim
    is tried again. A keyed job refused by an open queue is held for its key; any other
    refusal (canceled, running elsewhere, a duplicate delivery) changes nothing."""
    pause = queues.hold_if_paused(conn, job_id)
    if pause is queues.Pause.HELD:
        return None
    if pause is queues.Pause.LIFTED:
        row = ledger.claim(conn, job_id, worker, lease_s, token, locked_key=key)
        if row is not None:
            return row
    if key:
        detail = {"by": "worker", "held": f"concurrency key {key!r} at its limit"}
        sql.rows(conn, sql.query("hold"), id=job_id, key=key, detail=jsontext.text(detail))
    return None
