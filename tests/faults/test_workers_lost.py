"""A worker killed outright (main process and work horse): its job is not left `started`."""

import time

import pytest

from tests.e2e.conftest import Stack, children, wait_until
from tests.faults.conftest import Private
from tests.support import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def test_job_of_a_killed_worker_finishes_on_another(world: tuple[Stack, Ledger, Private]) -> None:
    stack, ledger_rows, _ = world
    stack.named_workers(w1=False, w2=False)
    stack.reconciler()
    r = stack.http.post(
        "/jobs", json={"task": "sleep", "args": {"seconds": 2}, "timeout_s": 4, "max_attempts": 2}
    )
    job_id = r.json()["id"]
    running = stack.wait(job_id, ("started",))
    assert running["status"] == "started"
    first = ledger_rows.row(job_id)
    assert first is not None

    stack.kill(first["worker"])

    # lease (JOBS_LEASE_S=6) + reconcile interval + the 2 s run, with room to spare
    done = stack.wait(job_id, timeout=20)
    assert done["status"] == "finished" and done["result"] == 2 and done["attempt"] == 2
    last = ledger_rows.row(job_id)
    assert last is not None and last["worker"] != first["worker"]
    assert ledger_rows.statuses(job_id) == ["queued", "started", "queued", "started", "finished"]
    assert ledger_rows.events(job_id)[2]["detail"]["error"]["type"] == "lost"


def test_job_of_a_killed_worker_fails_as_lost_without_attempts_left(
    world: tuple[Stack, Ledger, Private],
) -> None:
    stack, ledger_rows, _ = world
    stack.worker("w1", simple=True)
    stack.reconciler()
    r = stack.http.post("/jobs", json={"task": "sleep", "args": {"seconds": 30}, "timeout_s": 3})
    job_id = r.json()["id"]
    assert stack.wait(job_id, ("started",))["status"] == "started"

    stack.kill("w1")

    done = stack.wait(job_id, timeout=15)
    assert done["status"] == "failed" and done["attempt"] == 1
    assert done["error"]["type"] == "lost"
    assert ledger_rows.statuses(job_id) == ["queued", "started", "failed"]


def test_a_work_horse_ends_with_its_main_process(world: tuple[Stack, Ledger, Private]) -> None:
    """Only the main process is SIGKILLed: its work horse (own process group) must not run
    on unwatched beside the job's rescue; the kernel ends it (PR_SET_PDEATHSIG)."""
    stack, _, _ = world
    main = stack.worker("w1")
    job_id = stack.submit("sleep", seconds=30)
    assert stack.wait(job_id, ("started",))["status"] == "started"
    wait_until(lambda: bool(children(main.pid)), 10, "the work horse")  # forked after the claim
    [horse] = children(main.pid)

    main.kill()
    main.wait(10)

    deadline = time.monotonic() + 5
    while _alive(horse):
        assert time.monotonic() < deadline, "the work horse outlived its main process"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
