"""The ledger's rows as every caller sees them, whichever driver read them: frozen
dataclasses made from a driver's record by column name."""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Self
from uuid import UUID

from service.sql import Record

JsonObject = dict[str, object]


class _FromRecord:
    @classmethod
    def of(cls, row: Record) -> Self:
        """The row from a driver's record, read by column name."""
        return cls(**{name: row[name] for name in _names(cls)})


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    if cls not in _NAMES:
        _NAMES[cls] = tuple(f.name for f in fields(cls))
    return _NAMES[cls]


@dataclass(frozen=True)
class JobRow(_FromRecord):
    """One row of `jobs`, as every caller sees it."""

    id: UUID
    task: str
    queue: str
    args: JsonObject
    status: str
    attempt: int
    max_attempts: int
    backoff_s: float
    timeout_s: int
    result: object
    error: JsonObject | None
    progress: JsonObject | None
    owner: str
    idempotency_key: str | None
    request_hash: str | None
    meta: JsonObject
    run_at: datetime | None
    lease_expires_at: datetime | None
    worker: str | None
    claim_token: str | None
    checked_at: datetime | None
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    callback_url: str | None
    callback_for: datetime | None
    trace_context: str | None
    depends_on: list[UUID] | None
    pending_parents: int
    on_parent_failure: str | None
    has_children: bool
    unique_key: str | None
    concurrency_key: str | None
    max_concurrency: int | None
    held: bool
    throttled: int
    priority: int
    parked: bool

    def enqueued(self, at: datetime) -> "JobRow":
        """This row as the ledger will show it once it records `enqueued_at` (a copy of
        its fields; `dataclasses.replace` would check them all again, 1,000 times for a
        batch)."""
        row = object.__new__(JobRow)
        row.__dict__.update(self.__dict__, enqueued_at=at)
        return row


@dataclass(frozen=True)
class EventRow(_FromRecord):
    """One row of `job_events`: a transition, or a note about the job."""

    id: int
    job_id: UUID
    at: datetime
    status: str
    attempt: int
    worker: str | None
    detail: JsonObject


@dataclass(frozen=True)
class NewJob:
    """A job to record: what `service.submit` prepared."""

    id: UUID
    task: str
    queue: str
    args: JsonObject
    timeout_s: int
    max_attempts: int
    backoff_s: float
    owner: str
    meta: JsonObject
    run_at: datetime | None = None  # when it may start (in the future: it waits as `scheduled`)
    delay_s: float | None = None  # or: this long after the database records it
    idempotency_key: str | None = None
    request_hash: str | None = None
    callback_url: str | None = None
    trace_context: str | None = None  # the W3C traceparent its worker's spans continue
    depends_on: tuple[UUID, ...] = ()  # the jobs it waits for
    on_parent_failure: str | None = None  # `cancel` or `run`, with depends_on
    # set when it is recorded, from its parents' statuses: how many are not final yet, and
    # the error it is canceled with at once if one failed and its policy is `cancel`
    pending_parents: int = 0
    error: JsonObject | None = None
    # a unique job: its key, and which of the owner's jobs of that key make it a duplicate
    # (those created in the last `unique_for_s` seconds, in one of `unique_states`)
    unique_key: str | None = None
    unique_for_s: float | None = None
    unique_states: tuple[str, ...] = ()
    # at most `max_concurrency` running jobs of `concurrency_key` (service.concurrency)
    concurrency_key: str | None = None
    max_concurrency: int | None = None
    priority: int = 0  # 0 to 9, higher first (service.priorities)
    fair_quota: int = 0  # its owner's in-flight quota in its queue (0: none; service.fair_share)


@dataclass(frozen=True)
class LimiterRow(_FromRecord):
    """One row of `rate_limits` (service.limiters)."""

    name: str
    per_s: float | None
    declared: bool
    next_at: datetime
    backed_off_until: datetime | None
    started: int
    throttled: int
    changed_at: datetime
    changed_by: str | None


@dataclass(frozen=True)
class CallbackDue:
    job_id: UUID
    finished_at: datetime
    trace_context: str | None


@dataclass(frozen=True)
class ScheduleRow(_FromRecord):
    """One row of `schedules`."""

    id: UUID
    owner: str
    name: str
    cron: str
    timezone: str
    task: str
    args: JsonObject
    queue: str | None
    catch_up: str
    paused: bool
    next_fire_at: datetime
    last_fired_at: datetime | None
    recent_jobs: list[UUID]
    created_at: datetime
    updated_at: datetime
