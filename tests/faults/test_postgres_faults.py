"""PostgreSQL stopped under the API and under a worker, and the API's backends terminated."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.conftest import Stack
from tests.faults.conftest import Private
from tests.support import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def test_submits_while_postgres_is_down_are_503_and_reach_no_queue(
    world: tuple[Stack, Ledger, Private],
) -> None:
    stack, ledger_rows, private = world
    stack.worker("w1")
    private.pg.stop()
    try:
        replies = [stack.http.post("/jobs", json={"task": "echo"}) for _ in range(10)]
        assert [r.status_code for r in replies] == [503] * 10
        assert "ledger (PostgreSQL) is unreachable" in replies[0].json()["detail"]
        with private.redis_client() as r:
            assert r.keys("rq:job:*") == []
            assert r.llen("rq:queue:default") == 0
    finally:
        private.pg.start()

    _wait_ready(stack.http)
    job_id = stack.submit("echo", value="after the outage")  # the same API process
    assert stack.wait(job_id)["status"] == "finished"
    assert ledger_rows.count() == 1


def test_postgres_down_while_a_worker_finishes(world: tuple[Stack, Ledger, Private]) -> None:
    stack, ledger_rows, private = world
    stack.worker("w1")
    stack.reconciler()
    job_id = stack.submit("sleep", seconds=1.5)
    assert stack.wait(job_id, ("started",))["status"] == "started"

    private.pg.stop()
    try:
        time.sleep(3)  # the job ends while the ledger is away
    finally:
        private.pg.start()

    _wait_ready(stack.http)
    done = stack.wait(job_id, timeout=40)
    assert done["status"] == "finished" and done["result"] == 1.5
    assert done["attempt"] == 1  # the worker held on to the outcome and wrote it late
    assert ledger_rows.statuses(job_id)[-1] == "finished"


def _wait_ready(http: httpx.Client, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the API did not become ready again"
        time.sleep(0.2)


def test_the_api_recovers_when_its_backends_are_terminated(
    world: tuple[Stack, Ledger, Private],
) -> None:
    """Every API backend terminated (pool and listener): requests answer 503 with Retry-After,
    never 500, and the API is back on its own within a second."""
    stack, ledger_rows, private = world
    job_id = stack.submit("echo", value=1)
    with ThreadPoolExecutor(16) as pool:  # several pooled connections in use at once
        warm = list(pool.map(lambda _: stack.http.get(f"/jobs/{job_id}").status_code, range(64)))
    assert set(warm) == {200}

    with private.engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
        ).scalar_one()
    assert killed >= 3  # the API's pooled connections and its listener

    started = time.monotonic()
    replies = []
    for n in range(50):
        if n % 2:
            replies.append((time.monotonic(), stack.http.get(f"/jobs/{job_id}")))
        else:
            replies.append((time.monotonic(), stack.http.post("/jobs", json={"task": "echo"})))
    codes = [r.status_code for _, r in replies]
    assert 500 not in codes, codes
    assert all(r.headers.get("Retry-After") for _, r in replies if r.status_code == 503)
    assert set(codes) <= {200, 202, 503}, codes
    back = next(at for at, r in replies if r.status_code in (200, 202)) - started
    assert back < 1.0, codes
    assert set(codes[-10:]) <= {200, 202}, codes
    accepted = sum(1 for code in codes if code == 202)
    assert ledger_rows.count() == 1 + accepted  # every 202 is in the ledger
