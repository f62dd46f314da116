"""RQ workers that keep the ledger current.

All ledger writes happen in the worker's main process, around RQ's own `execute_job`:

1. claim the row (`queued → started`, attempt + 1, lease); no row means skip the job
   (canceled, already running, duplicate delivery, or not one of ours);
2. let RQ run the job: in a forked work horse (`LedgerWorker`) or in-process
   (`SimpleLedgerWorker`);
3. read the outcome RQ stored for this execution and write it, fenced by the attempt.

So a work horse never touches the database for bookkeeping, a horse killed by a signal is
recorded like any other failure, and the main process keeps one small pool for its life.
Start with `jobsvc worker [--simple]`, or `rq worker -w service.worker.LedgerWorker
-S rq.serializers.JSONSerializer`.
"""

import logging
import os
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

from redis.exceptions import RedisError
from rq import SimpleWorker, Worker
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from service import context, db, errors, ledger, logs, metrics, registry
from service.rows import JobRow
from service.settings import Settings, get_settings
from service.tables import Status

log = logging.getLogger(__name__)

T = TypeVar("T")

_OUTCOMES = {
    Status.FINISHED: metrics.FINISHED,
    Status.FAILED: metrics.FAILED,
    Status.SCHEDULED: metrics.RETRIED,
}
MESSAGE_LIMIT = 2_000
TRACEBACK_LIMIT = 20_000


class LedgerHooks:
    """The ledger side of a worker; mixed into RQ's `Worker` and `SimpleWorker`."""

    stops_jobs: bool

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        self.settings = settings or get_settings()
        registry.load(self.settings.task_modules)
        registry.preload(self.queue_names())  # type: ignore[attr-defined]
        self._engines: dict[bool, Engine] = {}  # autocommit → engine, of this process
        self._engines_pid = 0
        self._execution_id: str | None = None
        self._horse_status: int | None = None
        self._returned: tuple[str | None, Any] | None = None  # (execution id, return value)
        self.push_exc_handler(self._remember_error)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ database

    def _engine(self, autocommit: bool) -> Engine:
        """This process's engines: created where they are used, never inherited across a
        fork."""
        if self._engines_pid != os.getpid():
            self._engines, self._engines_pid = {}, os.getpid()
        if autocommit not in self._engines:
            self._engines[autocommit] = db.create_worker_engine(
                self.settings, autocommit=autocommit
            )
        return self._engines[autocommit]

    @property
    def engine(self) -> Engine:
        """The engine tasks use (transactions, pre-pinged connections)."""
        return self._engine(autocommit=False)

    def _dispose(self, close: bool = True) -> None:
        for engine in self._engines.values():
            engine.dispose(close=close)
        self._engines = {}

    def write(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Run one ledger statement (autocommit: it is its own transaction), retrying
        transient errors with backoff for up to JOBS_WORKER_DB_RETRY_S (architecture.md,
        "Outcomes survive database outages").

        None when the database stays unreachable: the job's row is left as it was, and the
        reconciler delivers it again (queued) or its lease expires (started).
        """
        deadline = time.monotonic() + self.settings.worker_db_retry_s
        delay = 0.1
        while True:
            try:
                with self._engine(autocommit=True).connect() as conn:
                    return fn(conn, *args)
            except DBAPIError as exc:
                if not db.transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("ledger unreachable, giving up on this write: %s", exc.orig)
                    return None
                log.warning("ledger write failed (%s); retrying in %.1fs", exc.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------ RQ hooks

    def execute_job(self, job: Job, queue: Queue) -> None:
        claimed = self._claim(job)
        if claimed is None:
            self._skip(job, queue)
            return
        self._horse_status = None
        self._returned = None
        ctx = context.JobContext(
            job_id=claimed.id,
            attempt=claimed.attempt,
            owner=claimed.owner,
            settings=self.settings,
            engine=lambda: self.engine,
            write=self.write,
        )
        fields = {"job_id": str(claimed.id), "task": claimed.task, "attempt": claimed.attempt}
        with logs.job_fields(**fields, worker=self.name):  # type: ignore[attr-defined]
            metrics.STARTED.labels(claimed.task).inc()
            since = claimed.enqueued_at or claimed.created_at
            metrics.QUEUE_WAIT_SECONDS.labels(claimed.task).observe(
                max(0.0, ((claimed.started_at or since) - since).total_seconds())
            )
            started = time.perf_counter()
            with context.entered(ctx):
                super().execute_job(job, queue)  # type: ignore[misc]
            metrics.RUN_SECONDS.labels(claimed.task).observe(time.perf_counter() - started)
            try:
                self._record_outcome(job, claimed)
            except Exception:  # whatever a job did, the worker goes on to the next one
                log.exception("job %s: outcome not recorded; its lease will bring it back", job.id)

    def prepare_execution(self, job: Job) -> Execution:
        execution: Execution = super().prepare_execution(job)  # type: ignore[misc]
        self._execution_id = execution.id
        return execution

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any) -> None:
        super().handle_job_success(job, queue, started_job_registry)  # type: ignore[misc]
        # Seen by the main process when the job ran in it (SimpleWorker): no read back.
        self._returned = (self._execution_id, job._result)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        # RQ stores the traceback UTF-8 encoded: a lone surrogate in it would raise here.
        exc_string = ledger.storable(exc_string, TRACEBACK_LIMIT, ends=True)
        super().handle_job_failure(job, queue, started_job_registry, exc_string)  # type: ignore[misc]

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        self._horse_status = ret_val
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[misc]

    def serialize(self) -> dict[str, Any]:
        """RQ's worker record, plus whether this worker can stop a running job."""
        data: dict[str, Any] = super().serialize()  # type: ignore[misc]
        data["stops_jobs"] = "1" if self.stops_jobs else "0"
        return data

    def teardown(self) -> None:
        super().teardown()  # type: ignore[misc]
        if self._engines_pid == os.getpid():
            self._dispose()

    def perform_job(self, job: Job, queue: Queue) -> bool:
        try:
            done: bool = super().perform_job(job, queue)  # type: ignore[misc]
            return done
        finally:
            if self.is_horse:  # type: ignore[attr-defined]
                self._dispose()  # connections the task opened close cleanly

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # The horse starts with empty pools; the parent's connections stay the parent's.
        self._dispose(close=False)
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
        job.meta["error"] = {
            "execution_id": execution.id if execution else None,
            "type": _error_type(exc_type),
            "message": ledger.storable(str(exc_value), MESSAGE_LIMIT),
            "permanent": issubclass(exc_type, errors.PermanentError),
        }
        try:
            job.save_meta()  # type: ignore[no-untyped-call]
        except RedisError:
            log.warning("job %s: error details not saved to Redis", job.id)
        return True

    def _claim(self, job: Job) -> JobRow | None:
        """The started row if this job may run here (architecture.md, "The row is the
        lock"), else None."""
        try:
            job_id = UUID(job.id)
        except ValueError:
            log.warning("job %s is not a ledger job; skipping it", job.id)
            return None
        row = self.write(ledger.claim, job_id, self.name, self.settings.lease_margin_s)  # type: ignore[attr-defined]
        if row is None:
            log.info("job %s skipped: the ledger does not let it start here", job.id)
            return None
        mismatch = _payload_mismatch(job, row)
        if mismatch is not None:
            log.error("job %s not run: %s", job.id, mismatch)
            self.write(
                ledger.fail,
                job_id,
                row.attempt,
                _error("payload_mismatch", mismatch, permanent=True),
            )
            return None
        return row

    def _record_outcome(self, job: Job, row: JobRow) -> None:
        if self._returned is not None and self._returned[0] == self._execution_id:
            self._record_success(row, self._returned[1])
            return
        try:
            result = job.latest_result()
        except RedisError as exc:
            log.error("job %s: outcome unreadable (%s); its lease will bring it back", job.id, exc)
            return
        if result is None or result.execution_id != self._execution_id:
            log.error(
                "job %s: no outcome stored for this run; its lease will bring it back", job.id
            )
            return
        if result.type == Result.Type.SUCCESSFUL:
            self._record_success(row, result.return_value)
        else:
            self._noted(row, self._record_failure(row, self._describe_failure(job, result)))

    def _record_success(self, row: JobRow, value: Any) -> None:
        try:
            written = self.write(ledger.finish, row.id, row.attempt, value)
        except DBAPIError as exc:  # e.g. a string with NUL, which JSONB refuses
            reason = f"the result could not be stored in the ledger: {exc.orig}"
            error = _error("result_invalid", reason, permanent=True)
            written = self.write(ledger.fail, row.id, row.attempt, error)
        self._noted(row, written)

    def _noted(self, row: JobRow, written: JobRow | None) -> None:
        if written is not None:
            _OUTCOMES[Status(written.status)].labels(row.task).inc()
            log.info("job %s %s", row.id, written.status)
        else:
            log.info(
                "job %s attempt %d: outcome not recorded (the row moved on, or the ledger is away)",
                row.id,
                row.attempt,
            )

    def _record_failure(self, row: JobRow, error: dict[str, Any]) -> JobRow | None:
        """Fail the attempt: `scheduled` for a retry while attempts are left, else `failed`."""
        if error["permanent"] or row.attempt >= row.max_attempts:
            return self.write(ledger.fail, row.id, row.attempt, error)
        delay_s = retry_delay(row.backoff_s, row.attempt, self.settings.max_backoff_s)
        return self.write(ledger.retry_later, row.id, row.attempt, error, delay_s)

    def _describe_failure(self, job: Job, result: Result) -> dict[str, Any]:
        traceback = result.exc_string or ""
        if self._horse_status is not None:
            status = self._horse_status
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {status}"
            return _error("killed", f"work horse ended by {how}", traceback)
        try:
            remembered = job.get_meta(refresh=True).get("error") or {}
        except RedisError:
            remembered = {}
        if remembered.get("execution_id") == self._execution_id:
            return _error(
                remembered["type"], remembered["message"], traceback, remembered["permanent"]
            )
        last_line = traceback.strip().splitlines()[-1] if traceback.strip() else "job failed"
        return _error("error", last_line, traceback)

    def _skip(self, job: Job, queue: Queue) -> None:
        """Forget a dequeued job without running it (the ledger is the record)."""
        try:
            IntermediateQueue(queue.key, self.connection).remove(job.id)  # type: ignore[attr-defined]
        except RedisError:
            log.warning(
                "job %s: could not clear it from %s's intermediate queue", job.id, queue.name
            )


def retry_delay(backoff_s: float, attempt: int, cap_s: float) -> float:
    """Exponential backoff with jitter: half to all of backoff_s * 2^(attempt - 1), capped."""
    ceiling = min(cap_s, backoff_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


def _payload_mismatch(job: Job, row: JobRow) -> str | None:
    """Why the RQ payload is not the ledger's job, or None: only the recorded task runs."""
    try:
        task = registry.get(row.task)
    except errors.TaskUnknown:
        return f"task {row.task!r} is not registered in this worker (JOBS_TASK_MODULES)"
    expected = f"{task.func.__module__}.{task.func.__qualname__}"
    try:
        func_name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except (DeserializationError, ValueError, TypeError) as exc:
        return f"the queued payload cannot be decoded as JSON ({type(exc).__name__})"
    if func_name != expected or instance is not None or args or kwargs != row.args:
        return f"the queued payload ({func_name}) does not match the recorded task {row.task!r}"
    if job.timeout != row.timeout_s:
        return f"the queued timeout ({job.timeout}) is not the recorded {row.timeout_s} s"
    # What RQ would run or call besides the task: the service never sets any of these.
    extras = {
        "success callback": job._success_callback_name,
        "failure callback": job._failure_callback_name,
        "stopped callback": job._stopped_callback_name,
        "webhooks": getattr(job, "webhooks", None),
        "dependencies": job._dependency_ids,
    }
    planted = sorted(name for name, value in extras.items() if value)
    if planted:
        return f"the queued payload carries what the service never sets: {', '.join(planted)}"
    return None


def _error_type(exc_type: type[BaseException]) -> str:
    if issubclass(exc_type, JobTimeoutException):
        return "timeout"
    if issubclass(exc_type, errors.ResultInvalid):
        return "result_invalid"
    return exc_type.__name__


def _error(
    kind: str, message: str, traceback: str | None = None, permanent: bool = False
) -> dict[str, Any]:
    """A failed attempt, as the ledger keeps it (whatever the texts hold: they are made
    storable); `permanent` ones are not retried."""
    return {
        "type": ledger.storable(kind, 200),
        "message": ledger.storable(message, MESSAGE_LIMIT),
        "traceback": None
        if traceback is None
        else ledger.storable(traceback, TRACEBACK_LIMIT, ends=True),
        "permanent": permanent,
    }


class LedgerWorker(LedgerHooks, Worker):
    """RQ's forking worker with the ledger hooks: each job runs in a fresh work horse."""

    stops_jobs = True


class SimpleLedgerWorker(LedgerHooks, SimpleWorker):
    """RQ's in-process worker with the ledger hooks: faster, but cannot stop a running job."""

    stops_jobs = False
