"""The ledger's tables. Migrations create them; only `service.ledger` queries them."""

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID


class Status(StrEnum):
    WAITING = "waiting"  # for its parents (depends_on) to end
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({Status.FINISHED, Status.FAILED, Status.CANCELED})

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, **kw: object) -> Column[object]:
    return Column(name, DateTime(timezone=True), **kw)  # type: ignore[arg-type]


_statuses = ", ".join(f"'{s}'" for s in Status)

jobs = Table(
    "jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("task", Text, nullable=False),
    Column("queue", Text, nullable=False),
    Column("args", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Text, nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False, server_default=text("1")),
    Column("backoff_s", Float, nullable=False, server_default=text("5")),
    Column("timeout_s", Integer, nullable=False),
    Column("result", JSONB),
    Column("error", JSONB),
    Column("progress", JSONB),
    Column("owner", Text, nullable=False),
    Column("idempotency_key", Text),
    Column("request_hash", Text),
    Column("meta", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _ts("run_at"),
    _ts("lease_expires_at"),
    Column("worker", Text),
    Column("claim_token", Text),  # which delivery claimed the running attempt
    Column("trace_context", Text),  # the submitting request's W3C traceparent
    _ts("checked_at"),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("enqueued_at"),
    _ts("started_at"),
    _ts("finished_at"),
    _ts("updated_at", nullable=False, server_default=func.now()),
    # completion callback: where to POST the final job, and the finish it was sent for
    Column("callback_url", Text),
    _ts("callback_for"),
    # dependencies: the jobs this one waits for, how many are not final yet, what a failed
    # one does to it (`cancel` or `run`), and whether any job waits for this one
    Column("depends_on", ARRAY(UUID(as_uuid=True))),
    Column("pending_parents", Integer, nullable=False, server_default=text("0")),
    Column("on_parent_failure", Text),
    Column("has_children", Boolean, nullable=False, server_default=text("false")),
    Column("unique_key", Text),  # a unique job's key (service.uniqueness)
    # at most max_concurrency running jobs of a concurrency key; `held`: queued but out of
    # Redis, `held_by` its key at its limit until one ends ('key', service.concurrency) or
    # a pause of its queue until the resume ('pause', service.queues)
    Column("concurrency_key", Text),
    Column("max_concurrency", Integer),
    Column("held", Boolean, nullable=False, server_default=text("false")),
    Column("held_by", Text),
    # times it was told to slow down (RateLimited) and rescheduled without an attempt spent
    Column("throttled", Integer, nullable=False, server_default=text("0")),
    # 0 to 9, higher first: the job waits in its queue's RQ list of that priority
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    # over its owner's in-flight quota in its queue: queued, not in Redis (service.fair_share)
    Column("parked", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("priority BETWEEN 0 AND 9", name="priority"),
    CheckConstraint("held_by IN ('key', 'pause')", name="held_by"),
    CheckConstraint("held = (held_by IS NOT NULL)", name="held"),
    CheckConstraint(f"status IN ({_statuses})", name="status"),
    CheckConstraint("attempt >= 0", name="attempt"),
    CheckConstraint("max_attempts >= 1", name="max_attempts"),
    CheckConstraint("timeout_s >= 1", name="timeout_s"),
    CheckConstraint("backoff_s >= 0", name="backoff_s"),
)

# Listing: newest first per owner, optionally narrowed by status or task (keyset on created_at, id).
Index("ix_jobs_owner_created", jobs.c.owner, jobs.c.created_at.desc(), jobs.c.id.desc())
Index(
    "ix_jobs_owner_status_created",
    jobs.c.owner,
    jobs.c.status,
    jobs.c.created_at.desc(),
    jobs.c.id.desc(),
)
Index(
    "ix_jobs_owner_task_created",
    jobs.c.owner,
    jobs.c.task,
    jobs.c.created_at.desc(),
    jobs.c.id.desc(),
)
# The reconciler's scans, each over the few rows that can still change in that way.
Index("ix_jobs_lease", jobs.c.lease_expires_at, postgresql_where=text("status = 'started'"))
Index("ix_jobs_due", jobs.c.run_at, postgresql_where=text("status = 'scheduled'"))
Index("ix_jobs_queued", jobs.c.created_at, postgresql_where=text("status = 'queued'"))
# cleanup: final rows by age
Index(
    "ix_jobs_finished",
    jobs.c.finished_at,
    postgresql_where=text("status IN ('finished', 'failed', 'canceled')"),
)
# Final jobs whose completion callback is still to be sent.
Index(
    "ix_jobs_callback_due",
    jobs.c.finished_at,
    postgresql_where=text(
        "callback_url IS NOT NULL AND status IN ('finished', 'failed', 'canceled')"
        " AND callback_for IS DISTINCT FROM finished_at"
    ),
)
# A parent's children (the dependency trigger, `GET /jobs?parent=`).
Index(
    "ix_jobs_depends_on",
    jobs.c.depends_on,
    postgresql_using="gin",
    postgresql_where=text("depends_on IS NOT NULL"),
)
# Concurrency keys: the running jobs of a key; the held jobs of a key, oldest first.
Index(
    "ix_jobs_running_key",
    jobs.c.concurrency_key,
    postgresql_where=text("status = 'started' AND concurrency_key IS NOT NULL"),
)
Index("ix_jobs_held", jobs.c.concurrency_key, jobs.c.created_at, postgresql_where=text("held"))
# Fair share: each owner's jobs in flight in a queue (in Redis or running); its parked ones.
Index(
    "ix_jobs_in_flight",
    jobs.c.owner,
    jobs.c.queue,
    postgresql_where=text("status IN ('queued', 'started') AND NOT parked"),
)
Index(
    "ix_jobs_parked",
    jobs.c.owner,
    jobs.c.queue,
    jobs.c.created_at,
    postgresql_where=text("parked"),
)
# Unique jobs: the owner's newest jobs of a key.
Index(
    "ix_jobs_unique_key",
    jobs.c.owner,
    jobs.c.unique_key,
    jobs.c.created_at.desc(),
    postgresql_where=text("unique_key IS NOT NULL"),
)
# One job per client and idempotency key; the index, not a check-then-insert, decides.
Index(
    "uq_jobs_owner_idempotency_key",
    jobs.c.owner,
    jobs.c.idempotency_key,
    unique=True,
    postgresql_where=text("idempotency_key IS NOT NULL"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "job_id",
        UUID(as_uuid=True),
        ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    _ts("at", nullable=False, server_default=func.clock_timestamp()),  # when written
    Column("status", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", Text),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
)
Index("ix_job_events_job_id", job_events.c.job_id, job_events.c.id)

# API keys: only a SHA-256 of each key is stored; the key itself is shown once, at creation.
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", Text, primary_key=True),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("admin", Boolean, nullable=False, server_default=text("false")),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("revoked_at"),
)

# Cron schedules: each fires a job at its ticks (service.schedules); `next_fire_at` is the
# first tick not yet fired, `recent_jobs` the newest jobs it fired (up to ten).
schedules = Table(
    "schedules",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("cron", Text, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("task", Text, nullable=False),
    Column("args", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("queue", Text),
    Column("catch_up", Text, nullable=False, server_default=text("'latest'")),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    _ts("next_fire_at", nullable=False),
    _ts("last_fired_at"),
    Column(
        "recent_jobs",
        ARRAY(UUID(as_uuid=True)),
        nullable=False,
        server_default=text("'{}'::uuid[]"),
    ),
    _ts("created_at", nullable=False, server_default=func.now()),
    _ts("updated_at", nullable=False, server_default=func.now()),
    CheckConstraint("catch_up IN ('latest', 'all', 'none')", name="catch_up"),
    UniqueConstraint("owner", "name"),
)
Index("ix_schedules_due", schedules.c.next_fire_at, postgresql_where=text("NOT paused"))

# Queues an operator paused: workers claim nothing from them (service.queues).
queue_states = Table(
    "queue_states",
    metadata,
    Column("name", Text, primary_key=True),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    _ts("changed_at", nullable=False, server_default=func.now()),
    Column("changed_by", Text),
)

# Named limiters of shared resources (service.limiters): starts are spaced 1 / per_s apart
# (`next_at`: the earliest next start); `defer_at`: the next slot for a job sent away to
# wait; `declared`: set from JOBS_RATE_LIMITS.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("name", Text, primary_key=True),
    Column("per_s", Float),
    Column("declared", Boolean, nullable=False, server_default=text("false")),
    _ts("next_at", nullable=False, server_default=func.now()),
    _ts("defer_at", nullable=False, server_default=func.now()),
    _ts("backed_off_until"),
    Column("started", BigInteger, nullable=False, server_default=text("0")),
    Column("throttled", BigInteger, nullable=False, server_default=text("0")),
    _ts("changed_at", nullable=False, server_default=func.now()),
    Column("changed_by", Text),
    CheckConstraint("per_s > 0", name="per_s"),
)

# record_analytics: events a job carried; (job_id, seq) makes a retried job's insert a no-op.
analytics_events = Table(
    "analytics_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("owner", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("properties", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _ts("occurred_at", nullable=False),
    _ts("recorded_at", nullable=False, server_default=func.now()),
    UniqueConstraint("job_id", "seq"),
)
Index(
    "ix_analytics_events_owner_name_occurred",
    analytics_events.c.owner,
    analytics_events.c.name,
    analytics_events.c.occurred_at,
)
