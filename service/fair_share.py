"""Fair share between tenants: one owner's flood cannot starve the others on a queue
(architecture.md, "Fair share").

With `JOBS_FAIR_SHARE_QUOTA` set, at most that many jobs of one owner in one queue (times
the owner's weight, `JOBS_TENANT_WEIGHTS`) are in flight: handed to Redis and not yet
ended. A job submitted past that is recorded `parked`: `queued`, but not handed to Redis
(the insert decides, counting the owner's jobs in flight). When one of the owner's jobs of
the queue ends, the worker that recorded it admits the owner's oldest parked jobs that
now fit and enqueues them; the reconciler does the same each pass for every owner (a slot
freed by a cancel or a rescue). So each owner has at most its quota in a queue's RQ list,
and a late owner's jobs wait behind at most the others' quotas, not their floods.
"""

import logging

from redis import Redis
from redis.exceptions import RedisError

from service import broker, db, sql
from service.ledger_writer import LedgerWriter
from service.rows import JobRow
from service.settings import Settings
from service.sql import SyncConnection

log = logging.getLogger(__name__)


def admitted(
    conn: SyncConnection, settings: Settings, owner: str | None = None, queue: str | None = None
) -> list[JobRow]:
    """Parked jobs (of one owner and queue, or of all) that fit their owner's quota now,
    no longer parked, the oldest first."""
    weighted = list(settings.tenant_weights)
    rows = sql.rows(
        conn,
        sql.query("admit_parked"),
        owner=owner,
        queue=queue,
        quota=settings.fair_share_quota,
        weighted=weighted,
        weights=[settings.tenant_weights[o] for o in weighted],
    )
    return [JobRow.of(row) for row in rows]


def top_up(writer: LedgerWriter, redis: Redis, settings: Settings, row: JobRow) -> None:
    """A worker's part when a job ends under fair share: enqueue its owner's parked jobs
    of the queue that now fit (the reconciler is the fallback: a failure is logged)."""
    try:
        rows = writer.write(admitted, settings, row.owner, row.queue) or []
        broker.enqueue_known(redis, rows, settings.result_ttl_s)
    except (RedisError, *db.SYNC_ERRORS) as exc:
        log.warning("owner %s: parked jobs not admitted (%s); the reconciler will", row.owner, exc)
