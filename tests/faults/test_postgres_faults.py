"""PostgreSQL stopped under the API and under a worker, and the API's backends terminated."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.conftest import Stack
from tests.faults.conftest import Private
from tests.faults.test_leases import submit_beat
from tests.support import Ledger, beat_spans, make_key

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


def test_postgres_down_while_a_worker_finishes(
    world: tuple[Stack, Ledger, Private], tmp_path: Path
) -> None:
    """The job ends while PostgreSQL is down (by the task's own record); the worker keeps
    the outcome and writes it once PostgreSQL is back (by the ledger's clock)."""
    stack, ledger_rows, private = world
    stack.worker("w1")
    stack.reconciler()
    record = tmp_path / "beats"
    job_id = submit_beat(stack, record, 1.5, max_attempts=2)
    assert stack.wait(job_id, ("started",))["status"] == "started"

    private.pg.stop()
    try:
        time.sleep(3)
    finally:
        back_at = time.time()
        private.pg.start()

    _wait_ready(stack.http)
    done = stack.wait(job_id, timeout=40)
    assert done["status"] == "finished" and done["result"] == 1.5
    assert done["attempt"] == 1  # the worker held on to the outcome and wrote it late
    assert beat_spans(record)[1][1] < back_at  # the job ended during the outage
    row = ledger_rows.row(job_id)
    assert row is not None and row["finished_at"].timestamp() > back_at  # written after it
    assert ledger_rows.statuses(job_id)[-1] == "finished"


def test_an_outage_longer_than_the_write_retries_is_repaired_by_the_lease(
    world: tuple[Stack, Ledger, Private], tmp_path: Path
) -> None:
    """The worker gives up writing an outcome after JOBS_WORKER_DB_RETRY_S (1 s here) and
    goes on; once PostgreSQL is back the attempt's lease lapses and the job runs again, not
    overlapping the first run."""
    stack, ledger_rows, private = world
    stack.env["JOBS_WORKER_DB_RETRY_S"] = "1"
    stack.worker("w1")
    stack.reconciler()
    record = tmp_path / "beats"
    job_id = submit_beat(stack, record, 1, max_attempts=2)
    assert stack.wait(job_id, ("started",))["status"] == "started"

    private.pg.stop()
    try:
        time.sleep(4)  # the job ends, the worker retries its write for 1 s, then gives up
    finally:
        private.pg.start()

    _wait_ready(stack.http)
    done = stack.wait(job_id, timeout=40)
    assert done["status"] == "finished" and done["attempt"] == 2, done
    spans = beat_spans(record)
    assert set(spans) == {1, 2} and spans[1][1] < spans[2][0]
    assert "outcome not recorded" in stack.log("w1")
    lost = [e for e in ledger_rows.events(job_id) if e["detail"].get("error")]
    assert lost and lost[0]["detail"]["error"]["type"] == "lost"


def test_a_revoked_key_stays_refused_across_a_postgres_restart(
    world: tuple[Stack, Ledger, Private],
) -> None:
    """Keys revoked before and after PostgreSQL restarts under the API's listener are
    refused, though the API would trust a cached key for 30 s."""
    stack, _, private = world
    stack.stop("api")
    stack.env["JOBS_KEY_CACHE_S"] = "30"
    stack.api()
    before, after = make_key(private.engine, "before"), make_key(private.engine, "after")
    for key in (before, after):
        assert _status(stack, key) == 200  # now cached
    _revoke(private, "before")
    assert _refused_within(stack, before, 2)

    private.pg.stop()
    private.pg.start()
    _wait_ready(stack.http)
    _revoke(private, "after")  # heard by the listener's new connection, or not cached

    assert _refused_within(stack, after, 2)
    assert {_status(stack, before) for _ in range(20)} == {401}


def _status(stack: Stack, key: str) -> int:
    return stack.http.get("/jobs", headers={"Authorization": f"Bearer {key}"}).status_code


def _revoke(private: Private, name: str) -> None:
    with private.engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = now() WHERE name = :n"), {"n": name})


def _refused_within(stack: Stack, key: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _status(stack, key) == 401:
            return True
        time.sleep(0.05)
    return False


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
