"""Redis loses everything (FLUSHALL, a restart without persistence) or is down while
clients submit: every accepted job still runs, once."""

import time

import pytest

from tests.e2e.conftest import Stack
from tests.faults.conftest import Private
from tests.support import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def wait_all_finished(ledger_rows: Ledger, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while ledger_rows.count("status = 'finished'") < count:
        assert time.monotonic() < deadline, f"{ledger_rows.count('status = ' + repr('finished'))}"
        time.sleep(0.2)


def assert_each_ran_once(ledger_rows: Ledger, ids: list[str]) -> None:
    for job_id in ids:
        row = ledger_rows.row(job_id)
        assert row is not None and row["status"] == "finished" and row["attempt"] == 1
        assert ledger_rows.statuses(job_id).count("started") == 1


def submit_echoes(stack: Stack, n: int) -> list[str]:
    return [stack.submit("echo", value=i) for i in range(n)]


def start_workers(stack: Stack) -> None:
    stack.worker("w1")
    stack.worker("w2", simple=True)
    stack.reconciler()


def test_flushall_loses_no_queued_job(world: tuple[Stack, Ledger, Private]) -> None:
    stack, ledger_rows, private = world
    ids = submit_echoes(stack, 100)
    with private.redis_client() as r:
        assert r.llen("rq:queue:default") == 100
        r.flushall()

    start_workers(stack)

    wait_all_finished(ledger_rows, 100)
    assert_each_ran_once(ledger_rows, ids)


def test_redis_restart_loses_no_queued_job(world: tuple[Stack, Ledger, Private]) -> None:
    stack, ledger_rows, private = world
    ids = submit_echoes(stack, 100)

    private.redis.stop()
    private.redis.start()  # no persistence: it comes back empty
    with private.redis_client() as r:
        assert r.dbsize() == 0

    start_workers(stack)
    wait_all_finished(ledger_rows, 100)
    assert_each_ran_once(ledger_rows, ids)


def test_submits_while_redis_is_down_are_accepted_and_run_later(
    world: tuple[Stack, Ledger, Private],
) -> None:
    stack, ledger_rows, private = world
    private.redis.stop()
    try:
        replies = [
            stack.http.post("/jobs", json={"task": "echo", "args": {"value": i}}) for i in range(20)
        ]
        assert [r.status_code for r in replies] == [202] * 20
        assert all(r.json()["enqueued_at"] is None for r in replies)
    finally:
        private.redis.start()

    start_workers(stack)
    wait_all_finished(ledger_rows, 20)
    assert_each_ran_once(ledger_rows, [r.json()["id"] for r in replies])
