"""The reconciler: repairs what faults leave behind, so no accepted job is lost or stuck
(architecture.md, "Nothing is stuck").

Each pass, in its own short transactions (rows picked with SKIP LOCKED, so several
reconcilers can run at once):

1. `started` rows whose lease expired (worker or machine lost) are queued again while
   attempts are left, else failed with error type `lost`;
2. `scheduled` rows whose `run_at` has come (delayed jobs, retry backoffs) are queued;
3. `queued` rows that Redis no longer holds (never enqueued, Redis flushed or restarted,
   an id popped by a worker that died) are enqueued again (`service.redelivery`: O(1) per
   row, whatever the queue's length);
4. held jobs that may go again (a concurrency key's slot freed, a paused queue resumed)
   and parked jobs with room are released and enqueued.

A step that changes a row's status (a rescue, a release, a new system job) commits first
and enqueues after: a worker that pops the job at once must find the row `queued` (a
claim does not wait for an uncommitted change of a row it cannot see as queued). If Redis
refuses, the rows wait as `queued` for step 3. Redelivery enqueues inside its transaction
(its rows are `queued` already; a worker's claim waits on the row lock) and records what
it sent.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from service import (
    broker,
    concurrency,
    db,
    fair_share,
    ledger,
    limiters,
    metrics,
    queues,
    registry,
    schedules,
    submit,
)
from service.dependencies import ends_a_parent, released_children
from service.redelivery import DeliveryCheck
from service.rows import JobRow
from service.settings import Settings
from service.tables import Status

log = logging.getLogger(__name__)


@dataclass
class Repairs:
    """What one pass changed."""

    requeued_lost: int = 0
    failed_lost: int = 0
    released: int = 0
    redelivered: int = 0
    scheduled: int = 0  # jobs fired by schedules
    callbacks_submitted: int = 0
    failed_steps: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.requeued_lost
            or self.failed_lost
            or self.released
            or self.redelivered
            or self.scheduled
            or self.callbacks_submitted
        )


class Reconciler:
    def __init__(self, settings: Settings, engine: Engine, redis: Redis) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.delivery = DeliveryCheck(redis, settings.redeliver_after_s)
        self._declared_kept = False
        registry.load(settings.task_modules)

    def run_pass(self) -> Repairs:
        repairs = Repairs()
        metrics.RECONCILE_PASSES.inc()
        for name, step in (
            ("rescue expired leases", self._rescue_expired),
            ("release due jobs", self._release_due),
            ("redeliver lost jobs", self._redeliver),
            ("keep declared schedules and limiters", self._keep_declared),
            ("fire schedules", self._fire_schedules),
            ("release held jobs", self._release_held),
            ("release jobs of resumed queues", self._release_resumed),
            ("admit parked jobs", self._admit_parked),
            ("submit callbacks", self._submit_callbacks),
        ):
            try:
                with self.engine.begin() as conn:
                    changed = step(conn, repairs)
                self._enqueue(changed)  # committed: a worker that pops it can claim it
            except (DBAPIError, RedisError) as exc:
                log.warning("reconcile: %s failed (%s); next pass retries", name, exc)
                repairs.failed_steps.append(name)
        for repair in (
            "requeued_lost",
            "failed_lost",
            "released",
            "redelivered",
            "scheduled",
            "callbacks_submitted",
        ):
            if n := getattr(repairs, repair):
                metrics.REPAIRS.labels(repair).inc(n)
        return repairs

    def run(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            repairs = self.run_pass()
            if repairs:
                log.info("reconcile: %s", repairs)
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))

    # Each step returns the rows to enqueue once its transaction has committed.

    def _rescue_expired(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        rows = ledger.rescue_expired(conn, self.settings.reconcile_batch)
        again = [row for row in rows if row.status == Status.QUEUED]
        for row in rows:
            metrics.RESCUED.labels(row.task).inc()
        repairs.requeued_lost += len(again)
        repairs.failed_lost += len(rows) - len(again)
        if parents := [row.id for row in rows if ends_a_parent(row)]:  # their children too
            again += released_children(conn, parents)
        return again

    def _release_due(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        rows = ledger.release_due(conn, self.settings.reconcile_batch)
        repairs.released += len(rows)
        return rows

    def _redeliver(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        rows = ledger.unchecked_queued(
            conn, self.settings.redeliver_after_s, self.settings.reconcile_batch
        )
        if not rows:
            return []
        lost = self.delivery.lost(conn, rows)
        sent = self._enqueue(lost)
        gone = {row.id for row in lost}
        held = [row.id for row in rows if row.id not in gone]
        ledger.mark_checked(conn, held, [row.id for row in sent])
        repairs.redelivered += len(sent)
        return []

    def _submit_callbacks(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        """One `deliver_callback` job (as `system`) per final job with a callback_url, each
        time it reaches a final state."""
        deliveries = [
            submit.system_job(
                "deliver_callback",
                {"job_id": str(due.job_id), "finished_at": due.finished_at.isoformat()},
                idempotency_key=f"callback-{due.job_id}-{due.finished_at.isoformat()}",
                max_attempts=self.settings.callback_attempts,
                backoff_s=self.settings.callback_backoff_s,
                trace_context=due.trace_context,  # the delivery is part of the job's trace
            )
            for due in ledger.callbacks_due(conn, self.settings.reconcile_batch)
        ]
        submitted = submit.record_sync(conn, deliveries, "reconciler") if deliveries else []
        repairs.callbacks_submitted += len(submitted)
        return submitted

    def _keep_declared(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        """Once, at start: the system's schedules as the code declares them, the limiters
        as JOBS_RATE_LIMITS does."""
        if not self._declared_kept:
            schedules.keep_declared(conn, self.settings)
            limiters.keep_declared(conn, self.settings)
            self._declared_kept = True
        return []

    def _fire_schedules(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        """A job for each schedule tick due (the retention clean-up's among them)."""
        fired = schedules.fire_due(conn, self.settings, self.settings.reconcile_batch)
        repairs.scheduled += len(fired)
        return fired

    def _release_held(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        """Held jobs whose concurrency key has room again (a slot freed by a rescue or a
        cancel, or a worker's release that did not happen)."""
        rows = concurrency.release_fitting(conn, None, "reconciler")
        repairs.released += len(rows)
        return rows

    def _release_resumed(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        """Jobs a pause held whose queue is open again and that its resume did not release
        (a row locked at that instant, a queue resumed by other means than the API); a
        keyed one whose key has no room is held for its key instead."""
        rows = queues.release_resumed(conn)
        repairs.released += len(rows)
        return rows

    def _admit_parked(self, conn: Connection, repairs: Repairs) -> list[JobRow]:
        """Parked jobs whose owner has room in their queue again (fair share)."""
        if not self.settings.fair_share_quota:
            return []
        rows = fair_share.admitted(conn, self.settings)
        repairs.released += len(rows)
        return rows

    def _enqueue(self, rows: Sequence[JobRow]) -> list[JobRow]:
        """Enqueue the rows whose task this process knows; returns those."""
        return broker.enqueue_known(self.redis, rows, self.settings.result_ttl_s) if rows else []


def serve(settings: Settings, interval_s: float, once: bool, ready: Callable[[], None]) -> None:
    """The `jobsvc reconcile` process: one pass, or passes until SIGTERM/SIGINT."""
    engine = db.create_worker_engine(settings, "reconciler")
    redis = broker.connect(settings)
    try:
        reconciler = Reconciler(settings, engine, redis)
        ready()
        if once:
            log.info("reconcile: %s", reconciler.run_pass())
            return
        stop = threading.Event()
        _stop_on_signals(stop)
        reconciler.run(interval_s, stop)
    finally:
        engine.dispose()
        redis.close()


def _stop_on_signals(stop: threading.Event) -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
