"""Priorities with real workers: a priority-9 job submitted behind 1,000 priority-0 jobs is
the next one started, and a flood of high-priority jobs does not starve the low ones."""

from collections.abc import Callable
from datetime import datetime

import pytest

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger

pytestmark = pytest.mark.e2e

WORKERS = 2


def _batch(stack: Stack, *priorities: int) -> list[str]:
    jobs = [{"task": "echo", "args": {"value": n}, "priority": p} for n, p in enumerate(priorities)]
    r = stack.http.post("/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 202, r.text
    return [job["id"] for job in r.json()["jobs"]]


def _started_at(ledger_rows: Ledger, job_ids: list[str]) -> dict[str, datetime]:
    """Each started job's first start, from its events."""
    starts = {}
    for job_id in job_ids:
        found = [e["at"] for e in ledger_rows.events(job_id) if e["status"] == "started"]
        if found:
            starts[job_id] = found[0]
    return starts


def test_a_high_priority_job_starts_before_a_thousand_low_ones(
    make_stack: Callable[..., Stack], ledger_rows: Ledger
) -> None:
    stack = make_stack(**FAST)
    stack.workers(WORKERS)

    # a flood of high-priority jobs: the low ones get their share of pops meanwhile
    highs = _batch(stack, *[9] * 200)
    lows = _batch(stack, *[0] * 10)
    last = [lows[-1], highs[-1]]
    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in last), 40, "all done")
    low_starts = _started_at(ledger_rows, lows)
    last_high = max(_started_at(ledger_rows, highs).values())
    assert sum(1 for at in low_starts.values() if at < last_high) >= 5  # ~1 pop in 10

    low = _batch(stack, *[0] * 1000)
    [high] = _batch(stack, 9)
    job = stack.wait(high, timeout=30)
    assert job["status"] == "finished" and job["priority"] == 9
    assert stack.http.post("/jobs/cancel", json={"task": "echo", "status": "queued"}).is_success
    wait_until(lambda: ledger_rows.count("status = 'started'") == 0, 20, "workers idle")

    started = _started_at(ledger_rows, low)
    high_started = ledger_rows.events(high)[-2]["at"]  # started, then finished
    enqueued = datetime.fromisoformat(job["enqueued_at"])
    overtaken = [at for at in started.values() if enqueued < at < high_started]
    # at most a pop in flight and a low-first share pop per worker
    assert len(overtaken) <= 2 * WORKERS, len(overtaken)
    assert 1000 - len(started) > 500  # most low jobs were still waiting: it did not queue
