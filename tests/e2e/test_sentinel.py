"""Redis with automatic failover: the master is SIGKILLed while 500 jobs (200 in `make
test`) are submitted and run; Sentinel promotes the replica; submits keep answering 202
(the row is recorded; what the dead master held or never passed on is delivered again
from the ledger), every job ends `finished` once, and no answer is a 500."""

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from redis import Redis
from sqlalchemy import Engine, text

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.e2e.sentinel import MASTER_NAME, RedisWithSentinels
from tests.support import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


# A job whose worker loses Redis mid-run for longer than it rides out (a third of the
# lease) is rescued when its lease runs out, and runs again as its attempts allow.
ECHO = {"task": "echo", "max_attempts": 3, "backoff_s": 0}


@pytest.fixture
def redis_ha() -> Iterator[RedisWithSentinels]:
    servers = RedisWithSentinels()
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.mark.parametrize(
    "jobs", [200, pytest.param(500, marks=pytest.mark.soak)], ids=["short", "full"]
)
def test_a_master_killed_mid_stream_loses_no_job(
    make_stack: Callable[..., Stack],
    redis_ha: RedisWithSentinels,
    sql_engine: Engine,
    ledger_rows: Ledger,
    jobs: int,
) -> None:
    stack = make_stack(
        REDIS_URL="redis://127.0.0.1/0",  # the database number; the sentinels give the host
        REDIS_SENTINELS=redis_ha.sentinels,
        REDIS_SENTINEL_MASTER=MASTER_NAME,
        jobs_REDIS_CONNECT_TIMEOUT_S="0.5",
        **FAST,
    )
    stack.reconciler()
    stack.named_workers(w1=True, w2=True)

    answers: list[int] = []
    accepted: list[str] = []

    def submit_all() -> None:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{stack.port}", headers=stack.http.headers
        ) as http:
            for i in range(jobs):
                started = time.monotonic()
                r = http.post("/jobs", json={**ECHO, "args": {"value": i}}, timeout=30)
                answers.append(r.status_code)
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                time.sleep(max(0.0, 0.01 - (time.monotonic() - started)))  # ~100 a second

    submitter = threading.Thread(target=submit_all)
    submitter.start()
    wait_until(lambda: len(answers) >= jobs // 3, timeout=30, what="a third submitted")
    old_master = redis_ha.master()
    redis_ha.kill_master()
    submitter.join(120)
    assert not submitter.is_alive()
    redis_ha.wait(lambda: redis_ha.master() == redis_ha.replica_port, 30)
    assert old_master == redis_ha.master_port

    assert set(answers) == {202}, sorted(set(answers))
    try:
        wait_until(
            lambda: ledger_rows.count("status = 'finished'") == jobs,
            timeout=120,
            what=f"all {jobs} jobs finished",
        )
    except AssertionError:
        with sql_engine.connect() as conn:
            left = conn.execute(text("SELECT * FROM jobs WHERE status <> 'finished'")).all()
        redis = Redis(port=redis_ha.master())
        seen = {
            str(row.id): (
                redis.hgetall(f"rq:job:{row.id}"),
                redis.lrange("rq:queue:default", 0, -1),
                redis.lrange("rq:queue:default:intermediate", 0, -1),
            )
            for row in left
        }
        tails = {name: stack.log(name)[-2000:] for name in ("w1", "w2", "reconciler")}
        pytest.fail(f"not finished: {left}; in Redis: {seen}; last lines: {tails}")
    with sql_engine.connect() as conn:
        per_job = conn.execute(
            text(
                "SELECT j.attempt, count(*) FILTER (WHERE e.status = 'started'),"
                "       count(*) FILTER (WHERE e.status = 'finished')"
                " FROM jobs j JOIN job_events e ON e.job_id = j.id GROUP BY j.id, j.attempt"
            )
        ).all()
        redelivered = conn.execute(
            text("SELECT count(*) FROM job_events WHERE detail->>'action' = 'redelivered'")
        ).scalar()
    assert len(per_job) == jobs
    # each attempt started once (a later one only after a rescue); one outcome each
    assert all(started == attempt and finished == 1 for attempt, started, finished in per_job)
    assert redelivered, "no hand-over was lost: the failover was not exercised"
    for name in ("api", "w1", "w2", "reconciler"):
        assert stack.procs[name].poll() is None, stack.log(name)
