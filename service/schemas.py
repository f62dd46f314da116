"""The API's request and response bodies (separate from the table definitions)."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from service.settings import per_second
from service.tables import Status


class JobIn(BaseModel):
    """A job to run. `args` must fit the task's args schema (see `GET /tasks`)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=200, description="a task name from GET /tasks")
    args: dict[str, JsonValue] = Field(default_factory=dict)
    queue: str | None = Field(
        default=None,
        max_length=200,
        description="overrides the task's queue; must be a known queue",
    )
    timeout_s: int | None = Field(
        default=None, ge=1, description="overrides the task's timeout, up to JOBS_MAX_TIMEOUT_S"
    )
    max_attempts: int | None = Field(
        default=None, ge=1, description="overrides the task's attempts, up to JOBS_MAX_ATTEMPTS_CAP"
    )
    backoff_s: float | None = Field(
        default=None,
        ge=0,
        description="overrides the task's retry backoff: attempt n waits about backoff_s * 2^(n-1)",
    )
    delay_s: float | None = Field(
        default=None, gt=0, description="run this many seconds from now (not with run_at)"
    )
    run_at: AwareDatetime | None = Field(
        default=None, description="run at this time, with its timezone (not with delay_s)"
    )
    meta: dict[str, JsonValue] = Field(
        default_factory=dict, description="client labels, stored and returned unchanged"
    )
    callback_url: AnyHttpUrl | None = Field(
        default=None,
        description="POSTed the final job, signed (X-Jobs-Signature), when the job ends",
    )
    depends_on: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="job ids (yours) this job waits for, up to JOBS_MAX_DEPENDS_ON; in a "
        "batch also the `ref` of another job of the batch. It waits as `waiting` until every "
        "one is final",
        examples=[["5f0c1a9e-3b1d-4f7e-9a53-2d8f0e6b7c41"]],
    )
    on_parent_failure: Literal["cancel", "run"] | None = Field(
        default=None,
        description="with depends_on: when a parent fails or is canceled, `cancel` this job "
        "(the default; error type dependency_failed) or `run` it anyway once every parent "
        "is final (a clean-up)",
        examples=["run"],
    )

    unique_for_s: float | None = Field(
        default=None,
        gt=0,
        description="a unique job: a submit of the same key within this many seconds gets the "
        "first job back (200) instead of a new one; up to JOBS_MAX_UNIQUE_FOR_S",
        examples=[300],
    )
    unique_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="with unique_for_s: the key; default: the task and its canonical args",
        examples=["sync-customer-42"],
    )
    unique_states: list[Status] | None = Field(
        default=None,
        min_length=1,
        description="with unique_for_s: the statuses of the first job that count; default: "
        "those not final (waiting, queued, scheduled, started)",
        examples=[["queued", "scheduled", "started", "finished"]],
    )

    concurrency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="at most max_concurrency running jobs of this key, across all workers: a "
        "template over {owner}, {task} and {args.<name>}; default: the task's",
        examples=["{args.customer_id}"],
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, le=10_000, description="with concurrency_key", examples=[2]
    )
    priority: int | None = Field(
        default=None,
        ge=0,
        le=9,
        description="0 to 9, higher first within its queue; default: the task's (0 unless it says)",
        examples=[9],
    )

    @field_validator("callback_url")
    @classmethod
    def _short_url(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and len(str(value)) > 2000:
            raise ValueError("callback_url is longer than 2000 characters")
        return value

    @model_validator(mode="after")
    def _one_start_time(self) -> "JobIn":
        if self.delay_s is not None and self.run_at is not None:
            raise ValueError("give delay_s or run_at, not both")
        if self.on_parent_failure is not None and not self.depends_on:
            raise ValueError("on_parent_failure is a policy for depends_on: give both")
        return self

    @field_validator("task", "queue", "args", "meta", "depends_on", "unique_key", "concurrency_key")
    @classmethod
    def _storable(cls, value: JsonValue) -> JsonValue:
        if _unstorable(value):
            raise ValueError(
                "text may not contain NUL (\\u0000) or an unpaired surrogate (\\ud800-\\udfff):"
                " the ledger cannot store it"
            )
        return value


def _unstorable(value: JsonValue) -> bool:
    """Whether any text in `value` holds what PostgreSQL cannot store: NUL, or a surrogate
    that is not half of a pair (JSON's `\\ud800` escapes can carry one)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


class BatchJobIn(JobIn):
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="as the Idempotency-Key header"
    )
    ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="a name for this job within the batch, for other jobs' depends_on (not a "
        "job id; unique in the batch)",
        examples=["resize"],
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchJobIn] = Field(min_length=1, max_length=1000)
    on_complete: JobIn | None = Field(
        default=None,
        description="one more job, run once every job of the batch is final whatever its "
        "outcome (policy `run`); its task reads their ids and statuses as its parents",
        examples=[
            {
                "task": "send_email",
                "args": {"to": ["ops@example.com"], "subject": "thumbnails done", "text": "."},
            }
        ],
    )

    @field_validator("on_complete")
    @classmethod
    def _waits_for_the_batch(cls, value: JobIn | None) -> JobIn | None:
        if value is not None and (value.depends_on or value.on_parent_failure):
            raise ValueError("on_complete depends on every job of the batch: no depends_on")
        return value


class QueueOut(BaseModel):
    name: str
    queued: int = Field(description="jobs due and waiting for a worker, by the ledger")
    oldest_age_s: float = Field(description="how long the oldest of them has waited")
    running: int
    paused: bool
    paused_at: datetime | None = None
    paused_by: str | None = None
    in_redis: int = Field(description="job ids in its RQ list")
    workers: int = Field(description="workers listening on it")


class LimiterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: str | None = Field(
        description="N/s, N/min or N/h; null: no rate (it still backs off when told to)",
        examples=["20/s"],
    )

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            per_second(value)
        return value


class LimiterOut(BaseModel):
    name: str
    per_s: float | None = Field(description="starts a second, spaced 1 / per_s apart")
    declared: bool = Field(description="set by JOBS_RATE_LIMITS (change it there)")
    next_at: datetime = Field(description="the earliest its next job may start")
    backed_off_until: datetime | None = Field(description="the last slow-down ends then")
    started: int = Field(description="jobs it started")
    throttled: int = Field(description="jobs sent away to wait, and slow-downs")
    changed_at: datetime
    changed_by: str | None


class ErrorOut(BaseModel):
    type: str
    message: str
    traceback: str | None = None


class ProgressOut(BaseModel):
    value: float
    message: str | None = None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    task: str
    queue: str
    status: Status
    args: dict[str, Any]
    result: JsonValue = None
    error: ErrorOut | None = None
    attempt: int
    max_attempts: int
    timeout_s: int
    progress: ProgressOut | None = None
    meta: dict[str, Any]
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    run_at: datetime | None
    callback_url: str | None = None
    depends_on: list[UUID] | None = Field(default=None, description="the jobs it waits for")
    pending_parents: int = Field(default=0, description="of those, how many are not final yet")
    on_parent_failure: str | None = None
    unique_key: str | None = Field(default=None, description="a unique job's key")
    concurrency_key: str | None = Field(default=None, description="its concurrency key")
    max_concurrency: int | None = None
    held: bool = Field(
        default=False,
        description="queued, but held: its concurrency key is at its limit, or its queue paused",
    )
    throttled: int = Field(
        default=0, description="times it was told to slow down and rescheduled, no attempt spent"
    )
    priority: int = Field(default=0, description="0 to 9, higher first within its queue")
    parked: bool = Field(
        default=False, description="queued, but parked: its owner has its fair share in flight"
    )


class CanceledOut(JobOut):
    notice: str = Field(description="what the cancel did: before start, stopped, or requested")


class BatchOut(BaseModel):
    jobs: list[JobOut] = Field(description="in the order submitted")
    refs: dict[str, UUID] = Field(
        default_factory=dict, description="each `ref` of the batch and its job's id"
    )
    on_complete: JobOut | None = None


class BulkIn(BaseModel):
    """Which jobs a bulk operation changes: `GET /jobs`' filters, at least one, or `all`."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = Field(default=None, examples=["failed"])
    task: str | None = Field(default=None, min_length=1, max_length=200, examples=["send_email"])
    queue: str | None = Field(default=None, min_length=1, max_length=200, examples=["email"])
    created_after: AwareDatetime | None = Field(default=None, examples=["2026-11-28T06:00:00Z"])
    created_before: AwareDatetime | None = Field(default=None, examples=["2026-11-28T07:00:00Z"])
    owner: str | None = Field(
        default=None, max_length=100, description="an admin's filter: one client's jobs"
    )
    all: bool = Field(
        default=False,
        description="no filter, on purpose: every job (a request with no filter and without"
        " this is refused; with a filter it is refused too)",
    )
    dry_run: bool = Field(
        default=False, description="change nothing: count the jobs and show some", examples=[True]
    )
    limit: int = Field(
        default=1000,
        ge=1,
        description="the most jobs changed, up to JOBS_BULK_LIMIT",
        examples=[500],
    )

    @field_validator("task", "queue", "owner")
    @classmethod
    def _storable(cls, value: JsonValue) -> JsonValue:
        return JobIn._storable(value)


class BulkOut(BaseModel):
    operation: str = Field(description="names the operation in each changed job's event")
    action: str
    dry_run: bool
    matched: int = Field(description="jobs the filters select that the action applies to")
    affected: int = Field(description="jobs changed (the oldest, up to the limit)")
    sample: list[JobOut] = Field(description="the first ten of those changed, or matched")


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last"
    )


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="increasing per job; an SSE stream's event id")
    at: datetime
    status: Status
    attempt: int
    worker: str | None
    detail: dict[str, Any]


class TaskOut(BaseModel):
    name: str
    description: str
    queue: str
    timeout_s: int
    max_attempts: int
    args_schema: dict[str, Any]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class UploadOut(BaseModel):
    upload_id: UUID = Field(description="pass it in a task's args, e.g. make_thumbnails")
    size: int
    sha256: str
    content_type: str


class Problem(BaseModel):
    """Every error: a message, or for invalid fields FastAPI's list of field errors."""

    detail: str | list[dict[str, Any]]


def problems(codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error codes, from {status: description}."""
    return {code: {"description": text, "model": Problem} for code, text in codes.items()}
