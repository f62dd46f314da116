"""Fair share with real workers: owner A floods a queue with 5,000 jobs, then owner B
submits 10; B's jobs wait behind A's quota, not A's flood."""

from collections.abc import Callable
from datetime import datetime

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger, make_key

pytestmark = pytest.mark.e2e

QUOTA = 50


def _finished_at(ledger_rows: Ledger, job_id: str) -> datetime | None:
    ends = [e["at"] for e in ledger_rows.events(job_id) if e["status"] == "finished"]
    return ends[0] if ends else None


def test_a_late_tenant_waits_behind_the_quota_of_a_flood(
    make_stack: Callable[..., Stack], sql_engine: Engine, ledger_rows: Ledger
) -> None:
    stack = make_stack(**FAST, JOBS_FAIR_SHARE_QUOTA=str(QUOTA))
    stack.workers(2)
    stack.reconciler()
    flood = []
    for _ in range(5):  # owner A ("tester"): 5,000 jobs
        r = stack.http.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 1000})
        assert r.status_code == 202, r.text
        flood += [job["id"] for job in r.json()["jobs"]]
    parked = stack.job(flood[-1])
    assert parked["parked"] is True and parked["status"] == "queued"

    b_key = make_key(sql_engine, "b")
    as_b = {"Authorization": f"Bearer {b_key}"}
    with httpx.Client(base_url=stack.http.base_url, headers=as_b) as b:
        late = b.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 10}).json()["jobs"]
        assert not any(job["parked"] for job in late)

        def b_done() -> bool:
            return all(b.get(f"/jobs/{job['id']}").json()["status"] == "finished" for job in late)

        wait_until(b_done, 30, "B's jobs done")

    b_last = max(at for j in late if (at := _finished_at(ledger_rows, j["id"])) is not None)
    b_sent = min(datetime.fromisoformat(job["enqueued_at"]) for job in late)
    with sql_engine.connect() as conn:
        q = text(
            "SELECT count(*) FROM job_events e JOIN jobs j ON j.id = e.job_id"
            " WHERE j.owner = 'tester' AND e.status = 'finished' AND e.at <= :at"
        )
        a_by_b_done = conn.execute(q, {"at": b_last}).scalar_one()
        overtaken = a_by_b_done - conn.execute(q, {"at": b_sent}).scalar_one()
    print(f"A's jobs finished: {a_by_b_done} by B's 10th, {overtaken} after B's reached Redis")
    assert a_by_b_done < 1000  # B's 10 finished before A's 1,000th
    # ahead of B's jobs when they reached Redis: A's quota (its jobs in Redis and those
    # running), and the few A's top-ups admitted in the same instant
    assert overtaken <= QUOTA + 5, overtaken
    metrics = stack.http.get("/metrics").text
    assert 'jobsvc_jobs_parked{queue="default"}' in metrics
    assert 'jobsvc_tenant_backlog{owner="tester"}' in metrics
