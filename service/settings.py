"""One typed Settings object, read from the environment (and `.env` when present)."""

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/jobsvc"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOBS_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: PostgresDsn = Field(
        default=PostgresDsn(DEFAULT_DATABASE_URL),
        validation_alias=AliasChoices("DATABASE_URL", "JOBS_DATABASE_URL"),
    )
    listen_database_url: PostgresDsn | None = Field(
        default=None,
        description="where each API process LISTENs for changes (default: DATABASE_URL); "
        "PostgreSQL itself, not a pooler in transaction mode",
    )
    # DATABASE_URL reaches PostgreSQL through a pooler in transaction mode (PgBouncer): each
    # transaction may run on another server connection, so no statement is prepared by name
    # and none is cached, and LISTEN goes to JOBS_LISTEN_DATABASE_URL (docs/scaling.md).
    db_transaction_pooling: bool = False
    redis_url: RedisDsn = Field(
        default=RedisDsn(DEFAULT_REDIS_URL),
        validation_alias=AliasChoices("REDIS_URL", "JOBS_REDIS_URL"),
    )
    # Redis behind Sentinel: `host:port` of each sentinel, comma-separated. The master's
    # address is asked of them, and asked again after a failover; REDIS_URL then gives
    # only the database number and the password (docs/scaling.md).
    redis_sentinels: Annotated[list[str], NoDecode] = Field(
        default=[], validation_alias=AliasChoices("REDIS_SENTINELS", "JOBS_REDIS_SENTINELS")
    )
    redis_sentinel_master: str = Field(
        default="mymaster",
        validation_alias=AliasChoices("REDIS_SENTINEL_MASTER", "JOBS_REDIS_SENTINEL_MASTER"),
    )

    # The API's database pool, per process. Overflow connections are opened and closed per
    # burst, which costs a busy API dearly, so by default every connection is kept.
    db_pool_size: int = Field(default=40, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)

    # Redis client timeouts: a submit never hangs on an unreachable Redis.
    redis_connect_timeout_s: float = Field(default=2.0, gt=0)
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)

    # Tasks and queues
    task_modules: Annotated[list[str], NoDecode] = Field(
        default=[
            "jobs.builtin",
            "jobs.email",
            "jobs.reports",
            "jobs.images",
            "jobs.webhooks",
            "jobs.analytics",
        ],
        description="comma-separated modules that define tasks (the service's own, cleanup and "
        "deliver_callback, are always loaded)",
    )
    max_timeout_s: int = Field(default=3600, ge=1, description="cap on a submit's timeout_s")
    max_attempts_cap: int = Field(default=25, ge=1, description="cap on a submit's max_attempts")
    max_backoff_s: float = Field(default=3600, ge=0, description="cap on one retry's delay")
    max_delay_s: int = Field(default=30 * 86400, ge=1, description="cap on delay_s and run_at")
    result_ttl_s: int = Field(default=500, ge=1, description="how long RQ keeps a result")
    lease_s: int = Field(
        default=30,
        ge=3,
        description="a running job's lease: its worker renews it every third of this; a job "
        "whose lease runs out (its worker lost) is rescued by the reconciler",
    )
    list_limit_max: int = Field(default=500, ge=1)
    bulk_limit: int = Field(
        default=1000, ge=1, description="the most jobs one bulk cancel or retry changes"
    )

    # Worker ledger writes: transient errors are retried for this long
    worker_db_retry_s: float = Field(default=30, ge=0)

    # Reconciler
    reconcile_interval_s: float = Field(default=1.0, gt=0)
    redeliver_after_s: float = Field(
        default=30, gt=0, description="a queued job not seen in Redis this long is enqueued again"
    )
    reconcile_batch: int = Field(default=500, ge=1)

    # Access. JOBS_DEV_MODE turns authentication off (every request acts as an admin client
    # named "dev"), lets the dashboard run without a password and the rate limit default
    # to off: for a developer's machine only.
    dev_mode: bool = False
    key_cache_s: float = Field(
        default=5, ge=0, description="how long an API process trusts a key it looked up"
    )
    streams_per_client: int = Field(
        default=20, ge=1, description="SSE streams one client may hold open on one API process"
    )
    stream_max_s: float = Field(
        default=600, gt=0, description="an SSE stream ends after this; clients resume"
    )
    public_readyz: bool = Field(default=True, description="serve /readyz without an API key")
    public_docs: bool = Field(default=True, description="serve /docs and /openapi.json openly")
    cors_origins: Annotated[list[str], NoDecode] = Field(default=[])
    trusted_hosts: Annotated[list[str], NoDecode] = Field(default=["*"])

    # Request limits
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    body_timeout_s: float = Field(
        default=30, gt=0, description="a request body not received in this time is a 408"
    )
    max_args_bytes: int = Field(default=256 * 1024, ge=16)
    max_meta_bytes: int = Field(default=16 * 1024, ge=16)
    max_json_depth: int = Field(default=32, ge=2)
    # Schedules (`/schedules`)
    max_schedules: int = Field(default=100, ge=0, description="schedules one client may have")
    schedule_min_interval_s: float = Field(
        default=60, ge=1, description="the shortest time between two ticks of a client's cron"
    )
    schedule_grace_s: float = Field(
        default=60, gt=0, description="catch_up none: a tick later than this is skipped"
    )
    max_unique_for_s: float = Field(
        default=7 * 86400, gt=0, description="the longest unique_for_s a job may ask"
    )
    max_depends_on: int = Field(
        default=100, ge=1, le=1000, description="the parents one job may name in depends_on"
    )

    # Shared rate limits of resources (service.limiters), `smtp=10/s,stripe=100/min`
    rate_limits: Annotated[dict[str, float], NoDecode] = Field(
        default={}, description="named limiters: starts per second, from N/s, N/min or N/h"
    )
    rate_wait_s: float = Field(
        default=2.0,
        ge=0,
        description="a worker waits this long at most for its job's limiter; longer, the job "
        "is sent away as scheduled for the limiter's next free slot",
    )
    rate_backoff_max_s: float = Field(
        default=3600, gt=0, description="the longest a RateLimited(retry_after) backs off"
    )
    max_throttled: int = Field(
        default=100,
        ge=0,
        description="RateLimited reschedules of one job before it counts as a failed attempt",
    )

    fair_share_quota: int = Field(
        default=0,
        ge=0,
        description="fair share between tenants: the most jobs of one owner in a queue "
        "handed to Redis and not yet ended (times its weight); the rest wait parked in the "
        "ledger and are admitted as the owner's jobs end (0: off)",
    )
    tenant_weights: Annotated[dict[str, float], NoDecode] = Field(
        default={}, description="owner=weight, comma-separated: a weight multiplies its quota"
    )
    priority_low_share: int = Field(
        default=10,
        ge=0,
        description="every this-many-th pop a worker takes its queues' lowest priority "
        "first, so higher priorities cannot starve lower ones (0: strict priority)",
    )

    # Per-client token bucket on POST /jobs; on unless JOBS_DEV_MODE, when not set.
    rate_limit: bool | None = None
    rate_limit_per_s: float = Field(default=50, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)

    # Files: task artifacts and client uploads, shared by the API and the workers
    artifacts_dir: Path = Path(".data/artifacts")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    upload_quota_bytes: int = Field(
        default=1024**3, ge=1024, description="what one client's uploads may hold at once"
    )
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="larger images are refused")

    # send_email
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "jobsvc@localhost"
    smtp_timeout_s: float = Field(default=10, gt=0)

    # completion callbacks: the HMAC-SHA256 key their signatures are made with
    callback_secret: SecretStr | None = Field(
        default=None, description="required before a job may carry callback_url"
    )
    callback_attempts: int = Field(default=8, ge=1, le=50)
    callback_backoff_s: float = Field(default=5.0, ge=0)

    # call_webhook (and completion callbacks)
    webhook_allow_private: bool = Field(
        default=False, description="let webhooks reach private, loopback and link-local addresses"
    )
    webhook_allow_loopback: bool = Field(
        default=False, description="let webhooks reach loopback addresses (127.0.0.0/8, ::1) only"
    )
    webhook_timeout_s: float = Field(default=10, gt=0)
    webhook_response_bytes: int = Field(default=4096, ge=0, description="body kept in the result")

    # cleanup: final jobs (with their events and artifacts) older than this are deleted
    retention_days: float = Field(default=30, gt=0)
    cleanup_cron: str = Field(
        default="0 * * * *", description="when the reconciler submits cleanup (cron, UTC)"
    )
    cleanup_batch: int = Field(default=1000, ge=1)

    # Dashboard (HTTP basic auth; required unless JOBS_DEV_MODE)
    dashboard_username: str | None = None
    dashboard_password: SecretStr | None = None

    # Ports, and the size of `jobsvc run`'s stack
    api_port: int = Field(default=8000, ge=1, le=65535, description="`jobsvc api` and `run`")
    dashboard_port: int = Field(default=9181, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, description="worker processes `jobsvc run` starts")
    api_grace_s: int = Field(
        default=10,
        ge=0,
        description="at SIGTERM, how long the API waits for open requests (long-polls and "
        "SSE streams, which clients resume) before it closes them",
    )
    # JOBS_DEV_MODE's mail sink (`jobsvc run`): where it listens (0: a free port)
    mail_sink_port: int = Field(default=0, ge=0, le=65535)

    # Local servers for machines without PostgreSQL or Redis (`jobsvc run`, tests)
    local_servers: str = Field(default="auto", pattern="^(auto|always|never)$")
    data_dir: Path = Path(".data")
    local_pg_port: int = 54329
    local_redis_port: int = 63799

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: readable lines on a terminal, JSON lines otherwise"
    )
    public_metrics: bool = Field(
        default=True, description="false: /metrics takes an API key, like the other routes"
    )

    @field_validator(
        "task_modules", "cors_origins", "trusted_hosts", "redis_sentinels", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("tenant_weights", "rate_limits", mode="before")
    @classmethod
    def _named_values(cls, value: Any, info: ValidationInfo) -> Any:
        """`name=value,name=value`: a weight (a number), or a rate (`N/s`, `N/min`, `N/h`)."""
        if not isinstance(value, str):
            return value
        read = per_second if info.field_name == "rate_limits" else float
        pairs = (p.partition("=") for p in value.split(",") if p.strip())
        return {name.strip(): read(given) for name, _, given in pairs}

    @field_validator("tenant_weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if any(weight <= 0 for weight in value.values()):
            raise ValueError("TENANT_WEIGHTS: a weight must be more than 0")
        return value

    def fair_quota(self, owner: str) -> int:
        """The owner's in-flight quota per queue (0: fair share is off)."""
        if not self.fair_share_quota:
            return 0
        return max(1, round(self.fair_share_quota * self.tenant_weights.get(owner, 1.0)))

    @field_validator("rate_limits")
    @classmethod
    def _limiter_names(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if not LIMITER_NAME.fullmatch(name):
                raise ValueError(f"RATE_LIMITS: {name!r} is not a limiter name")
        return value

    @property
    def rate_limit_on(self) -> bool:
        return (not self.dev_mode) if self.rate_limit is None else self.rate_limit

    @field_validator("redis_sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for sentinel in value:
            host, _, port = sentinel.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"REDIS_SENTINELS: {sentinel!r} is not host:port")
        return value

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """Each sentinel's (host, port)."""
        return [
            (h.strip("[]"), int(p)) for h, _, p in (s.rpartition(":") for s in self.redis_sentinels)
        ]

    @property
    def listen_url(self) -> str:
        """Where the API LISTENs: a session of its own on PostgreSQL."""
        if self.listen_database_url is None and self.db_transaction_pooling:
            raise ValueError(
                "JOBS_DB_TRANSACTION_POOLING is on: set JOBS_LISTEN_DATABASE_URL to reach "
                "PostgreSQL directly (LISTEN needs a session that a pooler in transaction "
                "mode does not keep)"
            )
        return str(self.listen_database_url or self.database_url)

    @property
    def sync_database_url(self) -> str:
        """The same database through psycopg 3, for the synchronous worker."""
        return str(self.database_url).replace("+asyncpg", "+psycopg", 1)


LIMITER_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_UNIT_S = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def per_second(rate: str) -> float:
    """Starts per second from `N/s`, `N/min` or `N/h` (ValueError otherwise)."""
    found = _RATE.fullmatch(rate)
    if found is None or float(found[1]) <= 0:
        raise ValueError(f"rate {rate.strip()!r} is not N/s, N/min or N/h with N > 0")
    return float(found[1]) / _UNIT_S[found[2]]


@lru_cache
def get_settings() -> Settings:
    return Settings()
