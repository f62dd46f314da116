"""`record_analytics`: a batch of events into `analytics_events`, in one statement."""

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy import text

from service.task_api import TaskArgs, current, task

# (job_id, seq) is unique: a retried job inserts nothing twice.
_INSERT = text(
    "INSERT INTO analytics_events (job_id, seq, owner, name, properties, occurred_at)"
    " SELECT CAST(:job_id AS uuid), e.n - 1, :owner, e.event->>'name', e.event->'properties',"
    " CAST(e.event->>'occurred_at' AS timestamptz)"
    " FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS e (event, n)"
    " ON CONFLICT (job_id, seq) DO NOTHING RETURNING id"
)


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = Field(default=None, description="default: when recorded")


class AnalyticsArgs(TaskArgs):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"events": [{"name": "signup", "properties": {"plan": "pro"}}]}]
        }
    )

    events: list[Event] = Field(min_length=1, max_length=1000)


@task(name="record_analytics", queue="analytics", timeout_s=60, max_attempts=5, backoff_s=5)
def record_analytics(args: AnalyticsArgs) -> dict[str, Any]:
    """Append events (up to 1,000 a job) to analytics_events, all in one INSERT."""
    ctx = current()
    now = datetime.now(UTC)
    events = [
        {
            "name": event.name,
            "properties": event.properties,
            "occurred_at": (event.occurred_at or now).isoformat(),
        }
        for event in args.events
    ]
    params = {"job_id": str(ctx.job_id), "owner": ctx.owner, "events": json.dumps(events)}
    with ctx.engine().begin() as conn:
        inserted = conn.execute(_INSERT, params).all()
    return {"received": len(events), "inserted": len(inserted)}
