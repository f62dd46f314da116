"""Pausing a queue with real workers: its jobs stay queued, other queues run, the pause
outlives restarts of the API and the workers, and a resume lets them run."""

import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger, make_key

pytestmark = pytest.mark.e2e


def test_a_paused_queue_waits_through_restarts_and_runs_when_resumed(
    make_stack: Callable[..., Stack], sql_engine: Engine, ledger_rows: Ledger
) -> None:
    stack = make_stack(**FAST)
    admin = {"Authorization": f"Bearer {make_key(sql_engine, 'ops', admin=True)}"}
    stack.named_workers(w1=False, w2=True)
    stack.reconciler()  # delivers again what a worker popped as the pause landed
    assert stack.http.post("/queues/default/pause", headers=admin).status_code == 200

    held = [stack.submit("echo", value=i) for i in range(5)]
    report = stack.submit("generate_report")
    assert stack.wait(report)["status"] == "finished"  # another queue runs meanwhile
    time.sleep(2.5)  # a worker looks at the pauses every 2 s
    assert all(stack.job(j)["status"] == "queued" for j in held)

    stack.stop("api", "w1", "w2")  # the pause is in the ledger
    stack.api()
    stack.worker("w3")
    time.sleep(2.5)
    assert all(stack.job(j)["status"] == "queued" for j in held)
    [default] = [
        q for q in stack.http.get("/queues", headers=admin).json() if q["name"] == "default"
    ]
    assert default["paused"] and default["queued"] == 5 and default["workers"] >= 1

    assert stack.http.post("/queues/default/resume", headers=admin).status_code == 200
    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in held), 20, "all run")
    assert all(ledger_rows.statuses(j).count("started") == 1 for j in held)
