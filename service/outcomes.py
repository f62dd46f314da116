"""How an attempt's end is kept in the ledger: its error (storable, with a type the API
shows), whether it may be retried and when, and whether the queued payload is the job the
ledger recorded at all."""

import os
import random
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.results import Result
from rq.timeouts import JobTimeoutException

from service import errors, ledger, registry
from service.rows import JobRow

MESSAGE_LIMIT = 2_000
TRACEBACK_LIMIT = 20_000


def retry_delay(backoff_s: float, attempt: int, cap_s: float) -> float:
    """Exponential backoff with jitter: half to all of backoff_s * 2^(attempt - 1), capped."""
    ceiling = min(cap_s, backoff_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


def payload_mismatch(job: Job, row: JobRow) -> str | None:
    """Why the RQ payload is not the ledger's job, or None: only the recorded task runs."""
    try:
        task = registry.get(row.task)
    except errors.TaskUnknown:
        return f"task {row.task!r} is not registered in this worker (JOBS_TASK_MODULES)"
    expected = registry.function_name(task)
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


def describe_failure(
    job: Job,
    result: Result,
    execution_id: str | None,
    stopped_for: str | None,
    horse_status: int | None,
) -> dict[str, Any]:
    """A failed execution's error: the worker's own stop (`stopped_for`), a work horse
    ended by a signal or an exit (`horse_status`), or what the task raised (its type and
    message, as the horse kept them for this execution, else the traceback's last line)."""
    traceback = result.exc_string or ""
    if stopped_for is not None:
        return error(stopped_for, STOPS[stopped_for], traceback)
    if horse_status is not None:
        status = horse_status
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {status}"
        return error("killed", f"work horse ended by {how}", traceback)
    try:
        remembered = job.get_meta(refresh=True).get("error") or {}
    except RedisError:
        remembered = {}
    if remembered.get("execution_id") == execution_id:
        found = error(remembered["type"], remembered["message"], traceback, remembered["permanent"])
        if "retry_after_s" in remembered:  # RateLimited
            found.update(retry_after_s=remembered["retry_after_s"], limiter=remembered["limiter"])
        return found
    last_line = traceback.strip().splitlines()[-1] if traceback.strip() else "job failed"
    return error("error", last_line, traceback)


def remembered(execution_id: str | None, exc: BaseException) -> dict[str, Any]:
    """What the work horse keeps of an exception its task raised, beside RQ's traceback,
    for the main process to record: its type and message, whether it is permanent, and a
    RateLimited's wait and limiter."""
    kept: dict[str, Any] = {
        "execution_id": execution_id,
        "type": error_type(type(exc)),
        "message": ledger.storable(str(exc), MESSAGE_LIMIT),
        "permanent": isinstance(exc, errors.PermanentError),
    }
    if isinstance(exc, errors.RateLimited):
        kept.update(retry_after_s=exc.retry_after_s, limiter=exc.limiter)
    return kept


def error_type(exc_type: type[BaseException]) -> str:
    if issubclass(exc_type, JobTimeoutException):
        return "timeout"
    if issubclass(exc_type, errors.ResultInvalid):
        return "result_invalid"
    return exc_type.__name__


def error(
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


STOPS = {
    "lease_lost": "the worker could not renew this attempt's lease (the ledger did not answer, "
    "or gave the job to another attempt); it stopped the job before the lease ran out",
    "timeout": "the job ran past its timeout_s and did not stop: its worker stopped it",
}
