"""Pausing a queue with real workers: its jobs stay queued, other queues run, the pause
outlives restarts of the API and the workers, and a resume lets them run within seconds,
those a worker popped as the pause landed included (held, and released by the resume)."""

import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine, text

from service import broker, queues, sql
from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger, make_key

pytestmark = pytest.mark.e2e

HELD = {"by": "worker", "held": "queue 'default' paused"}
RESUMED = "queue 'default' resumed"

CLAIMS_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND query LIKE '%UPDATE jobs SET status = ''started''%'"
)


def _pause_as_workers_pop(stack: Stack, sql_engine: Engine, redis: Redis) -> list[str]:
    """Pause `default` just as idle workers pop jobs of it: the pause is written under a
    lock of `queue_states` that keeps every worker's look at the pauses, and every claim,
    waiting until it commits; so jobs submitted meanwhile are popped by the workers blocked
    on the queue, and their claims meet the pause. Tried again (the pause rolled back) in
    the rare case that no worker was blocked on its queues then."""
    key = broker.queue("default", redis).key
    for _ in range(5):
        with sql_engine.connect() as conn:
            txn = conn.begin()
            conn.execute(text("LOCK TABLE queue_states IN ACCESS EXCLUSIVE MODE"))
            sql.run(conn, sql.query("set_paused"), name="default", paused=True, by="ops")
            jobs = [stack.submit("echo", value=i) for i in range(4)]
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                with sql_engine.connect() as other:
                    if other.execute(CLAIMS_WAITING).scalar():
                        txn.commit()
                        return jobs
                time.sleep(0.05)
            txn.rollback()  # the workers were all looking at the pauses: run these, again
        _all_run(stack, jobs)
        assert redis.llen(key) == 0
    raise AssertionError("no worker popped a job as the pause landed")


def _all_run(stack: Stack, jobs: list[str]) -> None:
    """Every one of `jobs` finishes within 10 s."""
    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in jobs), 10, "all run")


def _details(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    return [e["detail"] for e in stack.http.get(f"/jobs/{job_id}/events").json()]


def test_a_paused_queue_waits_through_restarts_and_runs_when_resumed(
    make_stack: Callable[..., Stack], sql_engine: Engine, ledger_rows: Ledger
) -> None:
    # Redelivery as by default (30 s): a job popped as the pause landed must not wait for it.
    stack = make_stack(**{**FAST, "JOBS_REDELIVER_AFTER_S": "30"})
    redis = Redis.from_url(stack.env["REDIS_URL"])
    admin = {"Authorization": f"Bearer {make_key(sql_engine, 'ops', admin=True)}"}
    stack.named_workers(w1=False, w2=True)
    stack.reconciler()
    landed = _pause_as_workers_pop(stack, sql_engine, redis)
    # Every worker has seen the pause since: its view of the pauses is at most CHECK_S old
    # when it starts a pop, which waits at most CHECK_S.
    time.sleep(2 * queues.CHECK_S + 0.5)
    later = [stack.submit("echo", value=i) for i in range(3)]
    report = stack.submit("generate_report")
    assert stack.wait(report)["status"] == "finished"  # another queue runs meanwhile
    jobs = landed + later
    assert all(stack.job(j)["status"] == "queued" for j in jobs)
    # Each job a worker popped is held (out of Redis, its history says why); the others,
    # those submitted once the workers knew of the pause among them, wait in Redis.
    popped = [j for j in jobs if stack.job(j)["held"]]
    assert popped and set(popped) <= set(landed)
    assert all(HELD in _details(stack, j) for j in popped)
    in_redis = redis.lrange(broker.queue("default", redis).key, 0, -1)
    assert sorted(i.decode() for i in in_redis) == sorted(set(jobs) - set(popped))

    stack.stop("api", "w1", "w2")  # the pause is in the ledger
    stack.api()
    stack.worker("w3")
    time.sleep(2.5)
    assert all(stack.job(j)["status"] == "queued" for j in jobs)
    [default] = [
        q for q in stack.http.get("/queues", headers=admin).json() if q["name"] == "default"
    ]
    assert default["paused"] and default["queued"] == len(jobs) and default["workers"] >= 1

    assert stack.http.post("/queues/default/resume", headers=admin).status_code == 200
    _all_run(stack, jobs)
    for job_id in jobs:
        assert ledger_rows.statuses(job_id).count("started") == 1
        details = _details(stack, job_id)
        if job_id in popped:  # held by the pause, released by the resume, then run
            [released] = [i for i, d in enumerate(details) if d.get("released") == RESUMED]
            assert details.index(HELD) < released < len(details) - 2
        else:
            assert not any("held" in d or "released" in d for d in details)
