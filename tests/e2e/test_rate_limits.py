"""Shared rate limits with real workers: 200 jobs on a 20/s limiter over four workers start
no faster than that, as their events show, and a receiver answering 429 with Retry-After
stops every worker's jobs for its host for that long."""

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import FAST, TEST_TASKS, Stack, wait_until
from tests.support import Ledger, QuietHandler, loopback_server, make_key

pytestmark = pytest.mark.e2e


def _starts(ledger_rows: Ledger, job_ids: list[str]) -> list[tuple[datetime, str]]:
    """Each `started` event's time and worker, in time order."""
    return sorted(
        (event["at"], event["worker"])
        for job_id in job_ids
        for event in ledger_rows.events(job_id)
        if event["status"] == "started"
    )


def test_two_hundred_jobs_on_a_20_per_second_limiter_over_four_workers(
    make_stack: Callable[..., Stack], ledger_rows: Ledger, sql_engine: Engine
) -> None:
    stack = make_stack(**FAST, **TEST_TASKS, JOBS_RATE_LIMITS="t20=20/s")
    stack.reconciler()  # sets the declared rate
    stack.workers(4)
    with sql_engine.connect() as conn:
        rate = conn.execute(text("SELECT per_s FROM rate_limits WHERE name = 't20'")).scalar()
    assert rate == 20

    batch = {"jobs": [{"task": "limited", "args": {"limiter": "t20"}}] * 200}
    r = stack.http.post("/jobs/batch", json=batch)
    assert r.status_code == 202, r.text
    job_ids = [job["id"] for job in r.json()["jobs"]]
    wait_until(lambda: all(stack.job(j)["status"] == "finished" for j in job_ids[-5:]), 40, "done")
    assert all(stack.job(j)["status"] == "finished" for j in job_ids)

    starts = _starts(ledger_rows, job_ids)
    assert len(starts) == 200  # each started once: waiting spent no attempt
    times = [at for at, _ in starts]
    assert times[-1] - times[0] >= timedelta(seconds=199 / 20)
    busiest = max(
        sum(1 for t in times if start <= t < start + timedelta(seconds=1)) for start in times
    )
    assert busiest <= 20  # in any second (from any start on)
    assert len({worker for _, worker in starts}) == 4  # shared by every worker


@pytest.fixture
def slow_down() -> Iterator[tuple[str, list[float]]]:
    """A receiver on loopback that answers the first request 429 with `Retry-After: 2`
    and the rest 200; its URL, and when each request arrived."""
    arrivals: list[float] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrivals.append(time.time())
            first = len(arrivals) == 1
            self.send_response(429 if first else 200)
            if first:
                self.send_header("Retry-After", "2")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with loopback_server(Handler) as url:
        yield url, arrivals


def test_a_429_with_retry_after_pauses_the_host_for_every_worker(
    make_stack: Callable[..., Stack],
    slow_down: tuple[str, list[float]],
    sql_engine: Engine,
    ledger_rows: Ledger,
) -> None:
    stack = make_stack(**FAST, JOBS_WEBHOOK_ALLOW_PRIVATE="1")
    admin = make_key(sql_engine, "ops", admin=True)
    stack.env.update(JOBS_URL=str(stack.http.base_url), JOBS_API_KEY=admin)
    set_rate = json.loads(stack.cli("rate-limits", "set", "webhook:127.0.0.1", "2/s"))
    assert set_rate["per_s"] == 2 and set_rate["changed_by"] == "ops"
    stack.reconciler()
    stack.workers(4)

    url, arrivals = slow_down
    body = {"task": "call_webhook", "args": {"url": url}}
    job_ids = [stack.http.post("/jobs", json=body).json()["id"] for _ in range(5)]
    jobs = [stack.wait(j, timeout=30) for j in job_ids]

    assert [job["status"] for job in jobs] == ["finished"] * 5
    told = [job for job in jobs if job["throttled"]]
    assert len(told) == 1 and told[0]["attempt"] == 2 and told[0]["max_attempts"] == 6
    first, *rest = arrivals
    assert len(rest) == 5  # the four others and the one told to slow down, once more
    assert min(rest) - first >= 2  # nothing reached the host for the 2 s it asked
    assert len({worker for _, worker in _starts(ledger_rows, job_ids)}) >= 3
    [host] = stack.cli("rate-limits", "list").splitlines()
    assert host.startswith("webhook:127.0.0.1") and "2/s" in host and "started 6" in host
