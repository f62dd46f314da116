"""The `/schedules` request and response bodies."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from service.schemas import JobIn
from service.tables import Status

_SCHEDULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$"


class ScheduleIn(BaseModel):
    """A cron schedule: a job of `task` with `args` at each tick, as your job."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=_SCHEDULE_NAME, description="unique among yours", examples=["nightly-report"]
    )
    cron: str = Field(
        min_length=1,
        max_length=200,
        description="5 fields (minute hour day month weekday), or 6 with seconds first; "
        "ticks at most every JOBS_SCHEDULE_MIN_INTERVAL_S",
        examples=["0 3 * * *"],
    )
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone the cron is read in; DST follows Debian cron's rules",
        examples=["Europe/Paris"],
    )
    task: str = Field(min_length=1, max_length=200, examples=["generate_report"])
    args: dict[str, JsonValue] = Field(default_factory=dict, examples=[{"kind": "daily"}])
    queue: str | None = Field(
        default=None, max_length=200, description="default: the task's", examples=["reports"]
    )
    catch_up: Literal["latest", "all", "none"] = Field(
        default="latest",
        description="after the reconcilers were down: fire every missed tick (`all`, up to 100"
        " a pass), only the latest (`latest`), or only those at most JOBS_SCHEDULE_GRACE_S"
        " late (`none`)",
        examples=["latest"],
    )
    paused: bool = Field(
        default=False, description="a paused schedule fires nothing", examples=[False]
    )

    @field_validator("name", "cron", "timezone", "task", "queue", "args")
    @classmethod
    def _storable(cls, value: JsonValue) -> JsonValue:
        return JobIn._storable(value)


class SchedulePatch(BaseModel):
    """The fields to change; a new cron or timezone, or `paused: false`, starts from the
    next tick after now."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=_SCHEDULE_NAME, examples=["nightly-report"])
    cron: str | None = Field(default=None, min_length=1, max_length=200, examples=["30 2 * * *"])
    timezone: str | None = Field(default=None, min_length=1, max_length=64, examples=["UTC"])
    task: str | None = Field(default=None, min_length=1, max_length=200, examples=["echo"])
    args: dict[str, JsonValue] | None = Field(default=None, examples=[{"value": 1}])
    queue: str | None = Field(default=None, max_length=200, examples=["default"])
    catch_up: Literal["latest", "all", "none"] | None = Field(default=None, examples=["all"])
    paused: bool | None = Field(default=None, examples=[True])

    @field_validator("name", "cron", "timezone", "task", "queue", "args")
    @classmethod
    def _storable(cls, value: JsonValue) -> JsonValue:
        return JobIn._storable(value)


class ScheduledJobOut(BaseModel):
    id: UUID
    status: Status
    scheduled_for: datetime | None = Field(description="the tick it was fired for")
    created_at: datetime


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    name: str
    owner: str
    cron: str
    description: str | None = Field(default=None, description="the cron in words")
    timezone: str
    task: str
    args: dict[str, Any]
    queue: str | None
    catch_up: str
    paused: bool
    next_fire_at: datetime = Field(description="its first tick not fired yet")
    next_fires: list[datetime] = Field(
        default_factory=list, description="its next five ticks (none while paused)"
    )
    last_fired_at: datetime | None
    last_jobs: list[ScheduledJobOut] = Field(
        default_factory=list, description="the newest jobs it fired, newest first"
    )
    created_at: datetime
    updated_at: datetime
