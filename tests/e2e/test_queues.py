"""Pausing a queue with real workers: its jobs stay queued, other queues run, the pause
outlives restarts of the API and the workers, and a resume lets them run within seconds,
those a worker popped as the pause landed included."""

import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger, make_key

pytestmark = pytest.mark.e2e

HELD = {"by": "worker", "held": "queue 'default' paused"}
RELEASED = {"by": "client", "released": "queue 'default' resumed"}


def test_a_paused_queue_waits_through_restarts_and_runs_when_resumed(
    make_stack: Callable[..., Stack], sql_engine: Engine, ledger_rows: Ledger
) -> None:
    # Redelivery as by default (30 s): a job popped as the pause landed must not wait for it.
    stack = make_stack(**{**FAST, "JOBS_REDELIVER_AFTER_S": "30"})
    admin = {"Authorization": f"Bearer {make_key(sql_engine, 'ops', admin=True)}"}
    stack.named_workers(w1=False, w2=True)
    stack.reconciler()
    before = stack.submit("echo", value="before")  # claimed before the pause, or held
    assert stack.http.post("/queues/default/pause", headers=admin).status_code == 200

    # Workers look at the pauses every 2 s: the first of these are popped and held.
    held = [stack.submit("echo", value=i) for i in range(5)]
    report = stack.submit("generate_report")
    assert stack.wait(report)["status"] == "finished"  # another queue runs meanwhile
    time.sleep(2.5)
    assert all(stack.job(j)["status"] == "queued" for j in held)

    stack.stop("api", "w1", "w2")  # the pause is in the ledger
    stack.api()
    stack.worker("w3")
    time.sleep(2.5)
    waiting = [j for j in (before, *held) if stack.job(j)["status"] == "queued"]
    assert set(held) <= set(waiting)
    [default] = [
        q for q in stack.http.get("/queues", headers=admin).json() if q["name"] == "default"
    ]
    assert default["paused"] and default["queued"] == len(waiting) and default["workers"] >= 1

    assert stack.http.post("/queues/default/resume", headers=admin).status_code == 200
    resumed = time.monotonic()
    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in waiting), 10, "all run")
    assert time.monotonic() - resumed < 10
    details = {
        j: [e["detail"] for e in stack.http.get(f"/jobs/{j}/events").json()] for j in waiting
    }
    assert any(HELD in d for d in details.values())  # popped as the pause landed, and said so
    for job_id, detail in details.items():
        assert ledger_rows.statuses(job_id).count("started") == 1
        if HELD in detail:
            assert detail.index(HELD) < detail.index(RELEASED) < len(detail) - 2
