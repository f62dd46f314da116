"""Concurrency keys with real workers: 50 jobs of key c1 (limit 2) over six workers never
run more than two at once, as their events show, while jobs of another key run beside
them."""

from collections.abc import Callable
from datetime import datetime

import pytest

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger

pytestmark = pytest.mark.e2e


def _most_at_once(ledger_rows: Ledger, job_ids: list[str]) -> int:
    """The most of these jobs running at one instant, from their `started` and final
    events (each attempt's own)."""
    edges: list[tuple[datetime, int]] = []
    for job_id in job_ids:
        for event in ledger_rows.events(job_id):
            if event["status"] == "started":
                edges.append((event["at"], 1))
            elif event["status"] in ("finished", "failed", "canceled", "scheduled"):
                edges.append((event["at"], -1))
    running = most = 0
    for _, step in sorted(edges):  # an end before a start at the same instant
        running += step
        most = max(most, running)
    return most


def _sleep(stack: Stack, key: str, most: int) -> str:
    body = {"task": "sleep", "args": {"seconds": 0.1}, "concurrency_key": key}
    r = stack.http.post("/jobs", json={**body, "max_concurrency": most})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def test_fifty_jobs_of_one_key_run_two_at_a_time_over_six_workers(
    make_stack: Callable[..., Stack], ledger_rows: Ledger
) -> None:
    stack = make_stack(**FAST)
    stack.workers(6)
    stack.reconciler()
    c1 = [_sleep(stack, "c1", 2) for _ in range(50)]
    c2 = [_sleep(stack, "{args.seconds}-c2", 3) for _ in range(9)]  # key "0.1-c2"

    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in c2), 30, "c2 done")
    assert any(stack.job(j)["status"] != "finished" for j in c1)  # c2 did not wait for c1
    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in c1), 60, "c1 done")

    assert _most_at_once(ledger_rows, c1) == 2
    assert _most_at_once(ledger_rows, c2) <= 3
    assert all(stack.job(j)["attempt"] == 1 for j in c1)  # held, never an attempt spent
    held = sum(1 for j in c1 if any(e["detail"].get("held") for e in ledger_rows.events(j)))
    assert held > 0  # the limit did hold jobs back
