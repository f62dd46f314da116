"""Several API processes over one ledger, as behind a load balancer: each has its own
LISTEN connection, so a long-poll or a stream waiting in one process wakes when another
process or a worker changes the job, and a revoked key is refused by every process;
`jobsvc api --workers N` adds up its processes' metrics."""

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, make_url, text

from service.localservers import free_port
from tests.e2e.conftest import FAST, Stack, get_when_up, wait_until
from tests.e2e.test_observability import _samples

pytestmark = pytest.mark.e2e


def _more_apis(stack: Stack, n: int) -> list[httpx.Client]:
    """`n` more API processes beside the stack's own, each on a port of its own."""
    clients = []
    for i in range(n):
        port = free_port()
        stack.start(f"api{i + 2}", "jobsvc", "api", "--port", str(port))
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=stack.http.headers, timeout=30
        )
        assert get_when_up(client, "/healthz").status_code == 200
        clients.append(client)
    return clients


def test_a_change_made_through_one_process_wakes_waiters_in_the_others(
    make_stack: Callable[..., Stack], sql_engine: Engine, database: str
) -> None:
    stack = make_stack(JOBS_KEY_CACHE_S="30", **FAST)  # revocations must come by NOTIFY
    second, third = _more_apis(stack, 2)
    try:
        listening = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'jobsvc-api-listen' AND datname = :db"
        )
        db_name = make_url(database).database

        def listeners() -> int:
            with sql_engine.connect() as conn:
                return int(conn.execute(listening, {"db": db_name}).scalar() or 0)

        wait_until(lambda: listeners() == 3, timeout=10, what="a LISTEN connection a process")

        # A long-poll in the first process; the job is canceled through the second.
        waiting = stack.submit("sleep", seconds=5)
        answer: dict[str, Any] = {}

        def long_poll() -> None:
            started = time.monotonic()
            r = stack.http.get(f"/jobs/{waiting}", params={"wait": 25})
            answer.update(r.json(), took=time.monotonic() - started)

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)  # the long-poll is waiting
        assert second.post(f"/jobs/{waiting}/cancel").json()["status"] == "canceled"
        poller.join(30)
        assert answer["status"] == "canceled"
        assert answer["took"] < 10  # woken by the other process's change, not timed out

        # A stream in the third process follows a worker's transitions to the end.
        streamed = stack.submit("echo", value="seen")
        with third.stream("GET", f"/jobs/{streamed}/stream") as r:
            stack.worker("w", simple=True)
            lines = [line for line in r.iter_lines() if line.startswith("event: ")]
        assert lines[-2:] == ["event: finished", "event: job"]

        # A key every process has cached, revoked: all refuse it.
        key = stack.cli("keys", "create", "shared")
        headers = {"Authorization": f"Bearer {key}"}
        apis = [stack.http, second, third]
        assert [api.get("/tasks", headers=headers).status_code for api in apis] == [200] * 3
        stack.cli("keys", "revoke", "shared")
        wait_until(
            lambda: all(api.get("/tasks", headers=headers).status_code == 401 for api in apis),
            timeout=5,  # within the notification's delivery, not the 30 s cache
            what="every API process refusing the revoked key",
        )
    finally:
        second.close()
        third.close()


def test_api_workers_add_up_their_metrics(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    stack = make_stack(PROMETHEUS_MULTIPROC_DIR=str(shared))
    stack.stop("api")
    stack.api("jobsvc", "api", "--port", str(stack.port), "--workers", "3")

    for i in range(60):  # a connection each: the kernel hands them to all three processes
        r = httpx.post(
            f"http://127.0.0.1:{stack.port}/jobs",
            json={"task": "echo", "args": {"value": i}},
            headers=stack.http.headers,
        )
        assert r.status_code == 202, r.text

    served = {path.stem.split("_", 1)[1] for path in shared.glob("counter_*.db")}
    m = _samples(stack.http.get("/metrics").text)
    assert len(served) >= 2, served  # more than one process kept counts
    assert m['jobsvc_jobs_submitted_total{task="echo"}'] == 60
    assert m['jobsvc_http_requests_total{method="POST",route="/jobs",status="202"}'] == 60
    assert m['jobsvc_queue_backlog{queue="default"}'] == 60
