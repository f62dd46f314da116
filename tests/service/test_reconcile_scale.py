"""The reconciler's cost does not grow with the queue: with 100,000 jobs waiting, a pass
that checks a batch of them costs Redis a few milliseconds (INFO commandstats)."""

import pytest
from redis import Redis
from sqlalchemy import Engine, text

from service import broker, registry
from service.settings import Settings
from tests.support import Ledger, run_reconcile_pass

pytestmark = pytest.mark.slow

QUEUED = 100_000


def redis_busy_usec(redis: Redis) -> int:
    """Microseconds Redis has spent in commands since its start (every client's)."""
    stats = redis.info("commandstats")
    return sum(int(entry["usec"]) for entry in stats.values())


def test_a_pass_over_a_deep_queue_costs_redis_little(
    settings: Settings, sql_engine: Engine, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    registry.load(settings.task_modules)
    # Created oldest-last but handed to Redis in order: the rows a pass checks first (the
    # oldest created) wait at the far end of the list.
    with sql_engine.begin() as conn:
        rows = conn.execute(
            text(
                "INSERT INTO jobs (id, task, queue, args, status, timeout_s, owner,"
                "                  created_at, enqueued_at)"
                " SELECT gen_random_uuid(), 'echo', 'default', '{\"value\": 1}', 'queued', 30,"
                "        'tester', now() - i * interval '1 ms',"
                "        now() - interval '1 hour' + i * interval '1 ms'"
                " FROM generate_series(1, :n) i ORDER BY i"
                " RETURNING id, task, queue, args, timeout_s, created_at, concurrency_key, priority"
            ),
            {"n": QUEUED},
        ).all()
    for start in range(0, QUEUED, 2000):
        broker.enqueue_rows(redis_conn, rows[start : start + 2000], 60)
    assert redis_conn.llen("rq:queue:default") == QUEUED

    before = redis_busy_usec(redis_conn)
    repairs = run_reconcile_pass(settings.model_copy(update={"redeliver_after_s": 1}))
    spent_ms = (redis_busy_usec(redis_conn) - before) / 1000

    assert repairs.redelivered == 0  # every job is still waiting in the list
    assert ledger_rows.count("checked_at IS NOT NULL") == settings.reconcile_batch
    checked = ledger_rows.count("checked_at IS NOT NULL AND created_at < now() - interval '99 s'")
    assert checked == settings.reconcile_batch  # the deepest ones were the ones checked
    assert spent_ms < 100, f"one pass cost Redis {spent_ms:.1f} ms"
