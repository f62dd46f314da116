"""PostgreSQL stopped under the API and under a worker."""

import time

import httpx
import pytest

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
