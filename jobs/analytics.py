"""`record_analytics`: a batch of events into `analytics_events`, in one statement."""

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy.dialects.postgresql import insert

from jobs import context
from jobs.registry import TaskArgs, task
from service.tables import analytics_events


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = Field(default=None, description="default: when recorded")


class AnalyticsArgs(TaskArgs):
    events: list[Event] = Field(min_length=1, max_length=1000)


@task(name="record_analytics", queue="analytics", timeout_s=60, max_attempts=5, backoff_s=5)
def record_analytics(args: AnalyticsArgs) -> dict[str, Any]:
    """Append events (up to 1,000 a job) to analytics_events, all in one INSERT."""
    ctx = context.current()
    rows = [
        {
            "job_id": ctx.job_id,
            "seq": seq,
            "owner": ctx.owner,
            "name": event.name,
            "properties": event.properties,
            "occurred_at": event.occurred_at or datetime.now(UTC),
        }
        for seq, event in enumerate(args.events)
    ]
    # (job_id, seq) is unique: a retried job inserts nothing twice.
    stmt = (
        insert(analytics_events)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["job_id", "seq"])
    )
    with ctx.engine().begin() as conn:
        inserted = conn.execute(stmt.returning(analytics_events.c.id)).all()
    return {"received": len(rows), "inserted": len(inserted)}
