"""Two reconcilers and six workers (three hosts' worth, by name) over one ledger: after
Redis loses 5,000 queued jobs (1,000 in `make test`) and a worker is SIGKILLed mid-job,
every job is repaired once — redelivered once, rescued once — however the two
reconcilers' passes interleave, and every claim names the worker's host and process."""

import re
import socket
from collections.abc import Callable

import pytest
from redis import Redis
from sqlalchemy import Engine, text

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.fault, pytest.mark.slow]

WORKERS = [f"host{host}-{i}" for host in "ABC" for i in (1, 2)]


def _events(engine: Engine, where: str) -> dict[str, int]:
    """Job id → how many of its events match `where`."""
    with engine.connect() as conn:
        found = conn.execute(
            text(f"SELECT job_id::text, count(*) FROM job_events WHERE {where} GROUP BY job_id")
        ).all()
    return {job_id: n for job_id, n in found}


@pytest.mark.parametrize(
    "jobs", [1000, pytest.param(5000, marks=pytest.mark.soak)], ids=["short", "full"]
)
def test_repairs_happen_once_with_two_reconcilers(
    make_stack: Callable[..., Stack],
    redis_conn: Redis,
    sql_engine: Engine,
    ledger_rows: Ledger,
    jobs: int,
) -> None:
    stack = make_stack(**FAST, JOBS_RECONCILE_BATCH="100")  # many steps to share

    # A job whose worker dies under it: its lease runs out, a reconciler rescues it.
    orphan = stack.http.post(
        "/jobs",
        json={"task": "sleep", "args": {"seconds": 2}, "queue": "reports", "max_attempts": 2},
    ).json()["id"]
    stack.start("doomed", "jobsvc", "worker", "reports", "--name", "doomed")
    assert stack.wait(orphan, ("started",))["status"] == "started"
    stack.kill("doomed")

    # The jobs recorded, then lost from Redis before any worker saw them.
    ids = []
    for _ in range(jobs // 1000):
        r = stack.http.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 1000})
        assert r.status_code == 202, r.text
        ids += [job["id"] for job in r.json()["jobs"]]
    stack.reconciler("reconciler-1")
    stack.reconciler("reconciler-2")
    redis_conn.flushdb()
    for name in WORKERS:
        stack.worker(name, simple=True)
    wait_until(
        lambda: ledger_rows.count("status IN ('finished', 'failed', 'canceled')") == jobs + 1,
        timeout=180,
        what=f"{jobs + 1} jobs final",
    )
    assert ledger_rows.count("status = 'finished'") == jobs + 1

    redelivered = _events(sql_engine, "detail->>'action' = 'redelivered'")
    rescued = _events(sql_engine, "detail->'error'->>'type' = 'lost'")
    # Every lost job came back (the orphan too, if it was rescued before the flush)...
    assert set(redelivered) >= set(ids)
    twice = {job_id: n for job_id, n in redelivered.items() if n > 1}
    assert not twice  # ...once
    assert rescued == {orphan: 1}
    by_each = [
        sum(int(n) for n in re.findall(r"redelivered=(\d+)", stack.log(name)))
        for name in ("reconciler-1", "reconciler-2")
    ]
    assert sum(by_each) == len(redelivered), (by_each, len(redelivered))
    assert min(by_each) > 0, by_each  # both took part
    assert stack.job(orphan)["attempt"] == 2

    with sql_engine.connect() as conn:
        claims = conn.execute(
            text(
                "SELECT worker, detail->>'host', (detail->>'pid')::int FROM job_events"
                " WHERE status = 'started'"
            )
        ).all()
    assert len(claims) == jobs + 2  # the orphan twice
    assert {worker for worker, _, _ in claims} <= {*WORKERS, "doomed"}
    assert {host for _, host, _ in claims} == {socket.gethostname()}
    assert len({pid for _, _, pid in claims}) == len({worker for worker, _, _ in claims})
