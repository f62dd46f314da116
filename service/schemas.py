"""The API's request and response bodies (separate from the table definitions)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

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
    meta: dict[str, JsonValue] = Field(
        default_factory=dict, description="client labels, stored and returned unchanged"
    )


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


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last"
    )


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
