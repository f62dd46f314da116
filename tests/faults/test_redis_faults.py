"""Redis loses everything (FLUSHALL, a restart without persistence) or is down while
clients submit: every accepted job still runs, once."""

import time

import pytest

from tests.e2e.conftest import Stack, wait_until
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
    stack.named_workers(w1=False, w2=True)
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


def test_flushall_in_the_middle_of_a_workflow_loses_nothing(
    world: tuple[Stack, Ledger, Private],
) -> None:
    """30 chains of three, Redis flushed once the first ten jobs have finished (the first
    steps come first, so most later ones still wait): what was queued is delivered again
    from the ledger, what waits was never in Redis, and every chain still ends with its
    results passed along."""
    stack, ledger_rows, private = world
    jobs = []
    for c in range(30):
        for step, value, parents in (("a", 1, []), ("b", 10, [f"a{c}"]), ("c", 100, [f"b{c}"])):
            args = {"value": value, "sleep_s": 0.2 if step == "a" else 0.05}
            job = {"ref": f"{step}{c}", "task": "add_parents", "args": args, "max_attempts": 3}
            jobs.append({**job, "depends_on": parents} if parents else job)
    r = stack.http.post("/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 202, r.text
    refs = r.json()["refs"]
    stack.reconciler()  # first: the workers' start is the clock of this test
    stack.named_workers(w1=False, w2=True)

    wait_until(lambda: ledger_rows.count("status = 'finished'") >= 10, 60, "10 finished")
    with private.redis_client() as redis:
        redis.flushall()
    waiting = ledger_rows.count("status = 'waiting'")

    wait_all_finished(ledger_rows, 90)
    assert waiting > 0  # the flush did come in the middle
    for c in range(30):
        assert stack.job(refs[f"c{c}"])["result"] == 111
        for step in "abc":
            assert ledger_rows.statuses(refs[f"{step}{c}"]).count("finished") == 1
