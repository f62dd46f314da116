"""RQ workers that keep the ledger current. All ledger writes happen in the worker's main
process, around RQ's own `execute_job`:

1. claim the row (`queued → started`, attempt + 1, a short lease; `service.admission`:
   behind its limiter, under its concurrency key's lock); no row: skip the job (canceled,
   running elsewhere, a duplicate delivery, not one of ours, held, or sent away to wait);
2. let RQ run it, in a forked work horse (`LedgerWorker`) or in-process
   (`SimpleLedgerWorker`), renewing the lease and stopping the job if the lease cannot be
   kept (`service.lease`); a Redis failure in RQ's bookkeeping leaves it to the lease;
3. write the outcome, fenced by the attempt (a `SimpleLedgerWorker`'s success before RQ's
   bookkeeping; otherwise what RQ stored for this execution), then enqueue the children
   it released. So a horse never writes bookkeeping, a horse killed by a signal is a failure
   like any other, and the main process keeps its connections. Start with `jobsvc worker`
   (or `rq worker -w service.worker.LedgerWorker -S rq.serializers.JSONSerializer`).
"""

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from uuid import UUID

from redis.exceptions import RedisError
from rq import SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.results import Result
from rq.serializers import JSONSerializer

from service import (
    admission,
    broker,
    context,
    db,
    fair_share,
    lease,
    ledger,
    limiters,
    logs,
    metrics,
    outcomes,
    priorities,
    registry,
)
from service.concurrency import release_held
from service.dependencies import ends_a_parent, hand_over_children
from service.lease import LeaseKeeper
from service.ledger_writer import LedgerWriter
from service.queues import Pauses, pausable, paused_names
from service.rows import JobRow
from service.settings import Settings, get_settings
from service.tables import Status
from service.tracing import flush_spans, job_run

log = logging.getLogger(__name__)

_OUTCOMES = {
    Status.FINISHED: metrics.FINISHED,
    Status.FAILED: metrics.FAILED,
    Status.SCHEDULED: metrics.RETRIED,
}


class LedgerHooks:
    """The ledger side of a worker; mixed into RQ's `Worker` and `SimpleWorker`."""

    stops_jobs: bool

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        settings = settings or get_settings()
        # How often the lease is renewed and checked (a forking worker's monitoring loop).
        self.check_interval_s = max(1, settings.lease_s // 3)
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("job_monitoring_interval", self.check_interval_s)
        pauses = Pauses(lambda: self.ledger.once(paused_names))  # paused queues are left alone
        kwargs.setdefault("queue_class", pausable(pauses, settings.priority_low_share))
        if args:  # each queue's lists, one a priority, highest first (service.priorities)
            names = [q if isinstance(q, str) else q.name for q in args[0]]
            args = (priorities.listening(names), *args[1:])
        super().__init__(*args, **kwargs)
        logs.quiet_rq()  # its lines per priority list, and per maintenance pass
        self.settings = settings
        registry.load(self.settings.task_modules)
        registry.preload(sorted({priorities.queue_of(n) for n in self.queue_names()}))  # type: ignore[attr-defined]
        self.ledger = LedgerWriter(settings)
        self._execution_id: str | None = None
        self._horse_status: int | None = None
        self._keeper: LeaseKeeper | None = None
        self._stopped_for: str | None = None  # why this worker stopped the running job
        self._running: JobRow | None = None  # the claimed row of the job running here
        self._written = False  # its outcome is in the ledger already (a SimpleWorker's)
        self.push_exc_handler(self._remember_error)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ RQ hooks

    def execute_job(self, job: Job, queue: Queue) -> None:
        claim_began = datetime.now(UTC)
        claimed = admission.admit(self.ledger, job, self.name, self.settings)  # type: ignore[attr-defined]
        if claimed is None:
            self._skip(job, queue)
            return
        self._horse_status = None
        self._stopped_for = None
        self._running, self._written = claimed, False
        self._keeper = LeaseKeeper(
            functools.partial(self._renew_lease, claimed.id, claimed.attempt),
            self.settings.lease_s,
            self.check_interval_s,
        )
        ctx = context.JobContext(
            job_id=claimed.id,
            attempt=claimed.attempt,
            owner=claimed.owner,
            settings=self.settings,
            engine=lambda: self.ledger.engine,
            write=self.ledger.write,
            depends_on=claimed.depends_on,
        )
        fields = {"job_id": str(claimed.id), "task": claimed.task, "attempt": claimed.attempt}
        with (
            logs.job_fields(**fields, worker=self.name),  # type: ignore[attr-defined]
            job_run(claimed, claim_began),
        ):
            metrics.started(claimed)
            started = time.perf_counter()
            with context.entered(ctx), self._keeping_lease(job):
                try:
                    super().execute_job(job, queue)  # type: ignore[misc]
                except RedisError as exc:  # RQ's own bookkeeping; the worker goes on
                    log.error("job %s: Redis failed (%s); its lease brings it back", job.id, exc)
                    return
            metrics.RUN_SECONDS.labels(claimed.task).observe(time.perf_counter() - started)
            try:
                self._record_outcome(job, claimed)
            except Exception:  # whatever a job did, the worker goes on to the next one
                log.exception("job %s: outcome not recorded; its lease will bring it back", job.id)

    # ------------------------------------------------------------ the lease

    def _renew_lease(self, job_id: UUID, attempt: int) -> bool:
        return self.ledger.once(
            ledger.renew_lease, job_id, attempt, self.settings.lease_s, lane="lease"
        )

    def _check_lease(self, job: Job, running_s: float) -> None:
        """Renew the lease; stop the job if the lease may run out before the next check,
        or if the job runs past its timeout (so it cannot outlive a lease it no longer
        deserves)."""
        assert self._keeper is not None
        if not self._keeper.holds():
            self._stop_running_job(job, "lease_lost")
        elif job.timeout and job.timeout > 0 and running_s > job.timeout + self.check_interval_s:
            self._stop_running_job(job, "timeout")

    def _stop_running_job(self, job: Job, why: str) -> None:
        log.error("job %s: stopping it (%s)", job.id, why)
        self._stopped_for = why
        self._interrupt()

    def _interrupt(self) -> None:
        raise NotImplementedError

    def _keeping_lease(self, job: Job) -> AbstractContextManager[None]:
        """What keeps the lease while the job runs, beside RQ's own loop."""
        return contextlib.nullcontext()

    def prepare_execution(self, job: Job) -> Execution:
        execution: Execution = super().prepare_execution(job)  # type: ignore[misc]
        self._execution_id = execution.id
        return execution

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any) -> None:
        # The job ran in this process (SimpleWorker): its outcome goes to the ledger before
        # RQ's own bookkeeping, and is not read back from Redis. (In a work horse, the
        # main process reads it from Redis when the horse has ended.)
        if not self.is_horse and self._running is not None:  # type: ignore[attr-defined]
            try:
                self._record_success(self._running, job._result)
                self._written = True
            except Exception:  # read back and written after RQ's bookkeeping instead
                log.exception("job %s: outcome not written yet", job.id)
        super().handle_job_success(job, queue, started_job_registry)  # type: ignore[misc]

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        # RQ stores the traceback UTF-8 encoded: a lone surrogate in it would raise here.
        exc_string = ledger.storable(exc_string, outcomes.TRACEBACK_LIMIT, ends=True)
        super().handle_job_failure(job, queue, started_job_registry, exc_string)  # type: ignore[misc]

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        self._horse_status = ret_val
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[misc]

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        """RQ's worker heartbeat, after each job: a Redis that is away does not end the
        worker (its next dequeue waits for Redis)."""
        try:
            super().heartbeat(*args, **kwargs)  # type: ignore[misc]
        except RedisError as exc:
            log.warning("worker heartbeat not sent (%s)", exc)

    def serialize(self) -> dict[str, Any]:
        """RQ's worker record, plus whether this worker can stop a running job."""
        data: dict[str, Any] = super().serialize()  # type: ignore[misc]
        data["stops_jobs"] = "1" if self.stops_jobs else "0"
        return data

    def unsubscribe(self) -> None:
        """RQ's, without its long wait for the thread that listens for commands: redis-py
        8's `PubSubWorkerThread.stop()` joins it, and once unsubscribed it first sleeps out
        RQ's 60-s poll, so a warm stop could take a minute. Here its flag comes down before
        the UNSUBSCRIBE, whose answer wakes it; one still asleep after a second is a daemon
        thread and ends with the process."""
        thread = self.pubsub_thread  # type: ignore[attr-defined]
        if not thread:
            return
        try:
            thread.stop(timeout=0)  # redis-py 8: the flag, and no wait
        except TypeError:  # redis-py before 8: stop() only lowers the flag
            thread.stop()
        with contextlib.suppress(RedisError):
            self.pubsub.unsubscribe()  # type: ignore[attr-defined]
        thread.join(timeout=1)

    def teardown(self) -> None:
        super().teardown()  # type: ignore[misc]
        if self.ledger.owned_here():
            self.ledger.dispose()

    def perform_job(self, job: Job, queue: Queue) -> bool:
        try:
            done: bool = super().perform_job(job, queue)  # type: ignore[misc]
            return done
        finally:
            if self.is_horse:  # type: ignore[attr-defined]
                self.ledger.dispose()  # connections the task opened close cleanly
                flush_spans()  # the horse ends with os._exit

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # The horse starts with empty pools; the parent's connections stay the parent's.
        self.ledger.dispose(close=False)
        super().main_work_horse(job, queue)  # type: ignore[misc]

    # ------------------------------------------------------------ outcome

    def _remember_error(
        self,
        job: Job,
        exc_type: type[BaseException],
        exc_value: BaseException,
        tb: TracebackType | None,
    ) -> bool:
        """RQ exception handler (runs where the job ran): keep the error's type and message
        beside the traceback RQ stores, for the main process to record."""
        execution = getattr(self, "execution", None)
        job.meta["error"] = outcomes.remembered(execution.id if execution else None, exc_value)
        try:
            job.save_meta()  # type: ignore[no-untyped-call]
        except RedisError:
            log.warning("job %s: error details not saved to Redis", job.id)
        return True

    def _record_outcome(self, job: Job, row: JobRow) -> None:
        if self._written:
            return
        try:
            result = job.latest_result()
        except RedisError as exc:
            log.error("job %s: outcome unreadable (%s); its lease will bring it back", job.id, exc)
            return
        if result is None or result.execution_id != self._execution_id:
            log.error("job %s: no outcome stored for this run; its lease brings it back", job.id)
            return
        if result.type == Result.Type.SUCCESSFUL:
            self._record_success(row, result.return_value)
        else:
            failure = outcomes.describe_failure(
                job, result, self._execution_id, self._stopped_for, self._horse_status
            )
            self._noted(row, self._record_failure(row, failure))

    def _record_success(self, row: JobRow, value: Any) -> None:
        try:
            written = self.ledger.write(ledger.finish, row.id, row.attempt, value)
        except db.SYNC_ERRORS as exc:  # e.g. a NUL in a string: JSONB refuses it
            reason = f"the result could not be stored in the ledger: {db.cause(exc)}"
            error = outcomes.error("result_invalid", reason, permanent=True)
            written = self.ledger.write(ledger.fail, row.id, row.attempt, error)
        self._noted(row, written)

    def _noted(self, row: JobRow, written: JobRow | None) -> None:
        if ends_a_parent(written):
            hand_over_children(self.ledger, self.connection, self.settings, row.id)  # type: ignore[attr-defined]
        if row.concurrency_key is not None:  # a slot of its key is free
            release_held(self.ledger, self.connection, self.settings, row.concurrency_key)  # type: ignore[attr-defined]
        if self.settings.fair_share_quota:  # a slot of its owner is free
            fair_share.top_up(self.ledger, self.connection, self.settings, row)  # type: ignore[attr-defined]
        if written is not None:
            _OUTCOMES[Status(written.status)].labels(row.task).inc()
            log.info("job %s %s", row.id, written.status)
        else:
            why = "the row moved on, or the ledger is away"
            log.info("job %s attempt %d: outcome not recorded (%s)", row.id, row.attempt, why)
            self._release(row)

    def _release(self, row: JobRow) -> None:
        """The attempt has stopped: if its job was canceled meanwhile, a retry need not wait
        for its lease to lapse. One try; the lease lapses on its own otherwise."""
        try:
            self.ledger.once(ledger.release_lease, row.id, row.attempt)
        except db.SYNC_ERRORS as exc:
            log.info("job %s: lease not released (%s); it lapses on its own", row.id, exc)

    def _record_failure(self, row: JobRow, error: dict[str, Any]) -> JobRow | None:
        """Fail the attempt: `scheduled` for a retry while attempts are left, else `failed`;
        told to slow down (RateLimited), `scheduled` with no attempt spent."""
        if "retry_after_s" in error:
            throttled = limiters.throttled(self.ledger, row, error, self.settings)
            if throttled is not None:
                return throttled
        if error["permanent"] or row.attempt >= row.max_attempts:
            return self.ledger.write(ledger.fail, row.id, row.attempt, error)
        delay_s = outcomes.retry_delay(row.backoff_s, row.attempt, self.settings.max_backoff_s)
        return self.ledger.write(ledger.retry_later, row.id, row.attempt, error, delay_s)

    def _skip(self, job: Job, queue: Queue) -> None:
        """Forget a dequeued job without running it (the ledger is the record)."""
        try:
            broker.forget(self.connection, job.id, queue.name, self.settings.result_ttl_s)  # type: ignore[attr-defined]
        except RedisError:
            log.warning("job %s: could not forget it in Redis; it expires or is cleaned", job.id)


class LedgerWorker(LedgerHooks, Worker):
    """RQ's forking worker with the ledger hooks: each job runs in a fresh work horse."""

    stops_jobs = True
    _parent_pid = 0

    def maintain_heartbeats(self, job: Job) -> None:
        """Every check interval while the horse runs (RQ's monitoring loop)."""
        try:
            super().maintain_heartbeats(job)
        except RedisError as exc:
            log.warning("job %s: RQ heartbeat not sent (%s)", job.id, exc)
        self._check_lease(job, self.current_job_working_time)

    def _interrupt(self) -> None:
        self.kill_horse()

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        self._parent_pid = os.getpid()
        super().fork_work_horse(job, queue)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        lease.end_with_parent(self._parent_pid)
        super().main_work_horse(job, queue)


class SimpleLedgerWorker(LedgerHooks, SimpleWorker):
    """RQ's in-process worker with the ledger hooks: faster; a running job is stopped only
    at a lease check (every JOBS_LEASE_S / 3), not at once."""

    stops_jobs = False

    @contextlib.contextmanager
    def _keeping_lease(self, job: Job) -> Iterator[None]:
        done = threading.Event()
        started = time.monotonic()

        def watch() -> None:
            # (A stop that lands just as the job ends meets no timeout handler, and ends
            # the process: the narrowest of windows, and a worker the supervisor restarts.)
            while not done.wait(self.check_interval_s):
                self._check_lease(job, time.monotonic() - started)
                if self._stopped_for is not None:
                    return

        watcher = threading.Thread(target=watch, name="lease-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()

    def _interrupt(self) -> None:
        # The job runs in this process's main thread under RQ's timeout alarm: raising it
        # early ends the job the way a timeout does.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
