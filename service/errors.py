"""Domain errors: what a client or a task can be told went wrong. They say what was wrong
and what is allowed; they know nothing of HTTP (`service.api.handlers` maps them)."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from pydantic import ValidationError


class JobServiceError(Exception):
    """Base for errors a client can cause or must be told about."""

    @property
    def detail(self) -> Any:
        return str(self)


class TaskUnknown(JobServiceError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(known)}")


class QueueUnknown(JobServiceError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"unknown queue {name!r}; known queues: {', '.join(known)}")


class ArgsInvalid(JobServiceError):
    def __init__(self, task: str, exc: ValidationError) -> None:
        super().__init__(f"args do not fit task {task!r}")
        self.errors = [
            {
                "type": e["type"],
                "loc": ["body", "args", *e["loc"]],
                "msg": e["msg"],
                "input": e.get("input"),
            }
            for e in exc.errors(include_url=False)
        ]

    @property
    def detail(self) -> Any:
        return self.errors


class QueueNotFound(JobServiceError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"no queue named {name[:200]!r}; the queues: {', '.join(known)}")


class AdminOnly(JobServiceError):
    def __init__(self) -> None:
        super().__init__("only an admin key may do this")


class JobNotFound(JobServiceError):
    def __init__(self, job_id: UUID | str) -> None:
        super().__init__(f"no job with id {job_id}")


class JobAlreadyTerminal(JobServiceError):
    def __init__(self, job_id: UUID, status: str, action: str) -> None:
        super().__init__(f"job {job_id} is already {status}; it cannot be {action}")


class JobNotRetryable(JobServiceError):
    def __init__(self, job_id: UUID, status: str) -> None:
        super().__init__(f"job {job_id} is {status}; only failed or canceled jobs can be retried")


class AttemptStillRunning(JobServiceError):
    def __init__(self, job_id: UUID) -> None:
        super().__init__(
            f"job {job_id} was canceled while running and its attempt has not stopped yet; "
            "retry again in a few seconds (at most JOBS_LEASE_S)"
        )


class IdempotencyKeyReused(JobServiceError):
    def __init__(self, key: str, job_id: UUID) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request (job {job_id}); "
            "send the same request to get that job, or use a new key"
        )


class ParentsUnknown(JobServiceError):
    def __init__(self, job_ids: Sequence[UUID]) -> None:
        listed = ", ".join(map(str, job_ids))
        super().__init__(f"depends_on names jobs that do not exist or are not yours: {listed}")


class SubmittedConcurrently(JobServiceError):
    def __init__(self) -> None:
        super().__init__(
            "the same idempotency key was submitted by another request at the same moment; "
            "nothing was recorded by this one: send it again to get that request's jobs"
        )


class ScheduleNotFound(JobServiceError):
    def __init__(self, schedule_id: UUID) -> None:
        super().__init__(f"no schedule with id {schedule_id}")


class ScheduleNameTaken(JobServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"you have a schedule named {name!r} already: choose another name")


class CursorInvalid(JobServiceError):
    def __init__(self) -> None:
        super().__init__("cursor is not one this service issued; pass next_cursor unchanged")


class LedgerUnavailable(JobServiceError):
    def __init__(self) -> None:
        super().__init__(
            "the job ledger (PostgreSQL) is unreachable; nothing was recorded, retry later"
        )


class OptionInvalid(JobServiceError):
    """A submit option outside what this service allows."""


class Unauthenticated(JobServiceError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class TooManyRequests(JobServiceError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many requests; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class TooManyStreams(JobServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"{limit} streams of yours are open already on this server: close one, or poll"
        )


class LimiterNotFound(JobServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no limiter named {name!r}")


class LimiterDeclared(JobServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"limiter {name!r} is declared in JOBS_RATE_LIMITS: change its rate there")


class KeyNameInvalid(JobServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"key name {name!r} is not allowed: use 1-100 letters, digits, '_', '.', '@' or '-'"
        )


class KeyNameTaken(JobServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a key named {name!r} exists already; revoke it or choose another name")


class KeyUnknown(JobServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no live key named {name!r}")


class ArtifactMissing(JobServiceError):
    def __init__(self, job_id: UUID, why: str) -> None:
        super().__init__(f"no artifact for job {job_id}: {why}")


class BodyTooLarge(JobServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body too large: over {limit} bytes")


class BodyTooSlow(JobServiceError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"request body not received within {seconds:g} s")


class UploadQuotaExceeded(JobServiceError):
    def __init__(self, quota: int) -> None:
        super().__init__(
            f"your uploads would pass your quota of {quota} bytes; they are deleted with"
            " the clean-up (JOBS_RETENTION_DAYS)"
        )


class BatchInvalid(JobServiceError):
    """Some jobs of a batch were refused, so none was recorded."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__("some jobs of the batch are not valid; none was recorded")
        self.problems = problems

    @property
    def detail(self) -> Any:
        return self.problems


# ---------------------------------------------------------------- raised by tasks


class PermanentError(Exception):
    """Raise it (or a subclass) from a task when retrying cannot help: bad input, a
    refused request. The job fails at once, whatever attempts are left."""


class ResultInvalid(PermanentError):
    """A task returned something the ledger cannot keep as JSON."""


class RateLimited(Exception):
    """Raise it from a task that a resource told to slow down (an HTTP 429 with
    Retry-After, say): the job is scheduled again `retry_after_s` later without spending an
    attempt, and the limiter (`limiter`, else the task's own) starts nothing for that long,
    for every worker (service.limiters)."""

    def __init__(self, retry_after_s: float, limiter: str | None = None) -> None:
        super().__init__(f"rate limited: retry after {retry_after_s:g} s")
        self.retry_after_s = float(retry_after_s)
        self.limiter = limiter
