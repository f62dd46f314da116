"""Leases are short heartbeats: a lost worker is found in seconds whatever the job's
timeout, and a worker that cannot renew its lease stops the job before anyone else may
start it."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack
from tests.faults.conftest import Private
from tests.faults.proxy import Proxy
from tests.support import Ledger, beat_spans

pytestmark = [pytest.mark.e2e, pytest.mark.fault, pytest.mark.slow]


@contextmanager
def worker_through_proxy(stack: Stack, private: Private, name: str) -> Iterator[Proxy]:
    """A worker that reaches PostgreSQL through a proxy of its own (the rest of the stack
    goes direct); the proxy closes at the end."""
    proxy = Proxy(private.pg.port)
    direct = stack.env["DATABASE_URL"]
    try:
        stack.env["DATABASE_URL"] = direct.replace(f":{private.pg.port}/", f":{proxy.port}/")
        stack.worker(name)
        stack.env["DATABASE_URL"] = direct
        yield proxy
    finally:
        stack.env["DATABASE_URL"] = direct
        proxy.close()


def submit_beat(stack: Stack, record: Path, seconds: float, max_attempts: int) -> str:
    args = {"seconds": seconds, "path": str(record)}
    r = stack.http.post("/jobs", json={"task": "beat", "args": args, "max_attempts": max_attempts})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


@pytest.mark.parametrize(
    ("lease_s", "bound_s"),
    [(6, 15), pytest.param(30, 45, marks=pytest.mark.soak, id="default-lease")],
    ids=lambda v: str(v),
)
def test_a_lost_worker_is_found_within_the_lease_not_the_timeout(
    world: tuple[Stack, Ledger, Private], lease_s: int, bound_s: int
) -> None:
    """A one-hour job whose whole worker is SIGKILLed runs again on another worker within
    the lease and a reconciler pass, not after its hour (the default lease, 30 s, behind
    `make soak`; a 6-s lease in every run)."""
    stack, ledger_rows, _ = world
    stack.env["JOBS_LEASE_S"] = str(lease_s)  # for workers and reconciler alike
    stack.named_workers(w1=False, w2=False)
    stack.reconciler()
    r = stack.http.post(
        "/jobs",
        json={"task": "sleep", "args": {"seconds": 600}, "timeout_s": 3600, "max_attempts": 2},
    )
    job_id = r.json()["id"]
    assert stack.wait(job_id, ("started",))["status"] == "started"
    first = ledger_rows.row(job_id)
    assert first is not None

    stack.kill(first["worker"])
    killed_at = time.monotonic()
    deadline = killed_at + bound_s
    while True:
        row = ledger_rows.row(job_id)
        assert row is not None
        if row["status"] == "started" and row["attempt"] == 2:
            break
        assert time.monotonic() < deadline, f"not running again after {bound_s} s: {row['status']}"
        time.sleep(0.2)

    assert row["worker"] != first["worker"]
    assert ledger_rows.events(job_id)[2]["detail"]["error"]["type"] == "lost"


def test_a_worker_cut_off_from_postgres_stops_its_job_before_it_is_rescued(
    world: tuple[Stack, Ledger, Private], tmp_path: Path
) -> None:
    """w1 reaches PostgreSQL through a proxy that goes quiet while its job runs: w1 stops
    the job before its lease runs out, and only then does w2 start it (seen from the
    job's own record of when it ran, not from the ledger)."""
    stack, ledger_rows, private = world
    record = tmp_path / "beats"
    with worker_through_proxy(stack, private, "w1") as proxy:
        job_id = submit_beat(stack, record, seconds=12, max_attempts=2)
        assert stack.wait(job_id, ("started",))["status"] == "started"
        time.sleep(1)

        proxy.freeze()
        frozen_at = time.time()
        stack.worker("w2")
        stack.reconciler()
        done = stack.wait(job_id, timeout=60)

        assert done["status"] == "finished" and done["attempt"] == 2
        attempts = beat_spans(record)
        assert set(attempts) == {1, 2}
        assert attempts[1][1] < attempts[2][0]  # attempt 1 had stopped when attempt 2 began
        assert attempts[1][1] < frozen_at + 6  # stopped within its lease (JOBS_LEASE_S=6)
        assert [e["worker"] for e in ledger_rows.events(job_id) if e["status"] == "started"] == [
            "w1",
            "w2",
        ]


def test_a_claim_whose_answer_is_lost_still_runs_the_job_once(
    world: tuple[Stack, Ledger, Private], tmp_path: Path
) -> None:
    """The worker's link to PostgreSQL drops right after its claim reached the server: the
    claim is applied but never acknowledged. The worker's retried claim finds its own
    claim (by its delivery token) and runs the job: attempt 1, once."""
    stack, ledger_rows, private = world
    record = tmp_path / "beats"
    with worker_through_proxy(stack, private, "w1") as proxy:
        proxy.cut_after(b"SET status = 'started', attempt = attempt + 1")
        job_id = submit_beat(stack, record, seconds=1, max_attempts=3)

        done = stack.wait(job_id, timeout=30)

        assert proxy.cuts == 1
    assert done["status"] == "finished" and done["attempt"] == 1
    assert set(beat_spans(record)) == {1}  # ran as attempt 1 only
    assert ledger_rows.statuses(job_id) == ["queued", "started", "finished"]
