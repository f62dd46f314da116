"""What Redis keeps of a job after the ledger has its outcome: nothing past
JOBS_RESULT_TTL_S, whether the job finished, failed, was canceled before it ran, or was a
delivery the ledger refused. So a Redis with `maxmemory-policy noeviction` does not fill."""

import time
from collections.abc import Callable
from uuid import UUID

import pytest
from redis import Redis
from sqlalchemy import Engine

from service import broker, ledger, registry
from service.settings import Settings
from tests.e2e.conftest import Stack, wait_until
from tests.support import Ledger

pytestmark = pytest.mark.e2e


def job_keys(redis: Redis) -> list[bytes]:
    return [k for k in redis.keys("rq:*") if k.startswith((b"rq:job:", b"rq:results:"))]


def test_redis_keeps_no_job_past_the_result_ttl(
    make_stack: Callable[..., Stack],
    settings: Settings,
    redis_conn: Redis,
    sql_engine: Engine,
    ledger_rows: Ledger,
) -> None:
    stack = make_stack(JOBS_RESULT_TTL_S="1")
    canceled = [stack.submit("echo", value=i) for i in range(5)]
    for job_id in canceled:  # before any worker runs: their hashes are deleted
        assert stack.http.post(f"/jobs/{job_id}/cancel").status_code == 200
    # A canceled job whose withdrawal from Redis was lost: a worker will be refused by
    # the ledger and must not leave its hash behind.
    registry.load(settings.task_modules)
    with sql_engine.connect() as conn:
        row = ledger.job(conn, UUID(canceled[0]))
    assert row is not None
    broker.enqueue_rows(redis_conn, [row], 1)
    done = [stack.submit("echo", value=i) for i in range(20)]
    failed = [stack.submit("fail", message="no") for _ in range(5)]

    stack.named_workers(w1=False, w2=True)
    for job_id in done + failed:
        assert stack.wait(job_id)["status"] in ("finished", "failed")
    assert ledger_rows.count("status = 'finished'") == 20
    assert ledger_rows.count("status = 'failed'") == 5
    wait_until(lambda: redis_conn.llen("rq:queue:default") == 0, 10, "the queue drained")

    time.sleep(1.5)  # past the TTL
    wait_until(lambda: job_keys(redis_conn) == [], 5, f"job keys expired: {job_keys(redis_conn)}")
