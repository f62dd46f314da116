"""The whole path with real processes: HTTP → ledger → RQ → worker → ledger → HTTP."""

import os
import signal
import subprocess
import time

import pytest
from redis import Redis

from service.settings import Settings
from tests.e2e.conftest import Stack
from tests.jobs.test_worker import _deliver_again
from tests.support import Ledger

pytestmark = pytest.mark.e2e

KINDS = [pytest.param(False, id="forking"), pytest.param(True, id="simple")]


def test_200_echo_jobs_on_both_kinds_of_worker(stack: Stack, ledger_rows: Ledger) -> None:
    stack.worker("forking")
    stack.worker("simple", simple=True)
    ids = {stack.submit("echo", value={"i": i, "s": "é" * (i % 3)}): i for i in range(200)}

    deadline = time.monotonic() + 120
    while ledger_rows.count("status = 'finished'") < 200 and time.monotonic() < deadline:
        time.sleep(0.2)

    for job_id, i in ids.items():
        job = stack.job(job_id)
        assert job["status"] == "finished", job
        assert job["result"] == {"i": i, "s": "é" * (i % 3)}
        assert job["attempt"] == 1
    workers = {ledger_rows.row(j)["worker"] for j in ids}  # type: ignore[index]
    assert workers == {"forking", "simple"}  # both kinds ran some


@pytest.mark.parametrize("simple", KINDS)
def test_fail_reaches_failed_with_message_and_traceback(stack: Stack, simple: bool) -> None:
    stack.worker("w", simple=simple)
    job_id = stack.submit("fail", message="boom-123")

    job = stack.wait(job_id)

    assert job["status"] == "failed"
    assert job["error"]["type"] == "TaskFailed"
    assert job["error"]["message"] == "boom-123"
    assert "Traceback (most recent call last)" in job["error"]["traceback"]
    events = stack.http.get(f"/jobs/{job_id}/events").json()
    assert [e["status"] for e in events] == ["queued", "started", "failed"]


@pytest.mark.parametrize("simple", KINDS)
def test_sleep_shows_started_while_it_runs(stack: Stack, simple: bool) -> None:
    stack.worker("w", simple=simple)
    job_id = stack.submit("sleep", seconds=2)

    running = stack.wait(job_id, ("started", *("finished", "failed")))
    assert running["status"] == "started"
    assert running["started_at"] is not None
    assert running["finished_at"] is None
    assert running["attempt"] == 1

    done = stack.wait(job_id)
    assert done["status"] == "finished"
    assert done["result"] == 2


@pytest.mark.parametrize("simple", KINDS)
def test_job_canceled_before_a_worker_starts_never_runs(
    stack: Stack, ledger_rows: Ledger, simple: bool
) -> None:
    canceled = stack.submit("echo", value="never")
    assert stack.http.post(f"/jobs/{canceled}/cancel").json()["status"] == "canceled"

    stack.worker("w", simple=simple)
    after = stack.submit("echo", value="after")
    assert stack.wait(after)["status"] == "finished"

    job = stack.job(canceled)
    assert job["status"] == "canceled"
    assert job["started_at"] is None
    assert job["attempt"] == 0
    assert ledger_rows.statuses(canceled) == ["queued", "canceled"]


@pytest.mark.parametrize("simple", KINDS)
def test_same_rq_job_delivered_twice_runs_once(
    stack: Stack, settings: Settings, redis_conn: Redis, ledger_rows: Ledger, simple: bool
) -> None:
    job_id = stack.submit("echo", value=7)
    _deliver_again(settings, redis_conn, job_id, {"value": 7})
    assert redis_conn.llen("rq:queue:default") == 2

    stack.worker("w", simple=simple)
    after = stack.submit("echo", value="after")
    assert stack.wait(after)["status"] == "finished"

    assert stack.job(job_id)["attempt"] == 1
    assert ledger_rows.statuses(job_id) == ["queued", "started", "finished"]


def _horse_pid(worker_pid: int) -> int:
    ps = ["ps", "-o", "pid=", "--ppid", str(worker_pid)]
    out = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.split()
    assert out, "the worker has no work horse"
    return int(out[0])


def test_work_horse_killed_leaves_the_row_failed(stack: Stack, ledger_rows: Ledger) -> None:
    worker = stack.worker("forking")
    job_id = stack.submit("sleep", seconds=30)
    assert stack.wait(job_id, ("started",))["status"] == "started"

    os.kill(_horse_pid(worker.pid), signal.SIGKILL)

    job = stack.wait(job_id, timeout=15)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "killed"
    assert job["error"]["message"] == "work horse ended by signal 9"
    assert ledger_rows.statuses(job_id) == ["queued", "started", "failed"]
    # the worker survives and takes the next job
    assert stack.wait(stack.submit("echo", value=1))["status"] == "finished"


def test_progress_shows_while_the_job_runs(stack: Stack) -> None:
    stack.worker("w")
    job_id = stack.submit("sleep", seconds=3)

    seen = []
    deadline = time.monotonic() + 20
    while (job := stack.job(job_id))["status"] != "finished" and time.monotonic() < deadline:
        if job["status"] == "started" and job["progress"]:
            seen.append(job["progress"]["value"])
        time.sleep(0.1)

    assert any(0 < v < 1 for v in seen), seen
    assert seen == sorted(seen)
    assert stack.job(job_id)["progress"]["value"] == 1.0
