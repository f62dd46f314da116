"""The whole path with real processes: HTTP → ledger → RQ → worker → ledger → HTTP."""

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis

from service.settings import Settings
from tests.e2e.conftest import TEST_TASKS, Stack
from tests.jobs.test_worker import _deliver_again
from tests.support import Ledger, beat_spans

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
    make_stack: Callable[..., Stack], ledger_rows: Ledger, tmp_path: Path, simple: bool
) -> None:
    stack = make_stack(**TEST_TASKS)
    marks = tmp_path / "ran"
    canceled = stack.submit("mark", path=str(marks))
    assert stack.http.post(f"/jobs/{canceled}/cancel").json()["status"] == "canceled"

    stack.worker("w", simple=simple)
    after = stack.submit("echo", value="after")
    assert stack.wait(after)["status"] == "finished"

    assert not marks.exists()  # the task never ran, by its own record
    job = stack.job(canceled)
    assert job["status"] == "canceled"
    assert job["started_at"] is None
    assert job["attempt"] == 0
    assert ledger_rows.statuses(canceled) == ["queued", "canceled"]


@pytest.mark.parametrize("simple", KINDS)
def test_same_rq_job_delivered_twice_runs_once(
    make_stack: Callable[..., Stack],
    settings: Settings,
    redis_conn: Redis,
    ledger_rows: Ledger,
    tmp_path: Path,
    test_tasks: None,
    simple: bool,
) -> None:
    stack = make_stack(**TEST_TASKS)
    marks = tmp_path / "ran"
    job_id = stack.submit("mark", path=str(marks))
    _deliver_again(settings, redis_conn, job_id, {"path": str(marks)}, "mark")
    assert redis_conn.llen("rq:queue:default") == 2

    stack.worker("w", simple=simple)
    after = stack.submit("echo", value="after")
    assert stack.wait(after)["status"] == "finished"

    [run] = marks.read_text().splitlines()  # it ran once, by its own record
    assert run.startswith("1 ")  # as attempt 1
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


def test_a_job_past_its_timeout_is_stopped_and_its_retry_does_not_overlap_it(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    """On a real forking `jobsvc worker`: RQ stops the attempt at `timeout_s` (type
    `timeout`), and the retry starts only after it stopped, by the task's own record."""
    stack = make_stack(**TEST_TASKS)
    stack.named_workers(w1=False, w2=False)
    stack.reconciler()  # releases the retry when its backoff ends
    record = tmp_path / "beats"
    r = stack.http.post(
        "/jobs",
        json={
            "task": "beat",
            "args": {"seconds": 30, "path": str(record)},
            "timeout_s": 2,
            "max_attempts": 2,
            "backoff_s": 0,
        },
    )
    assert r.status_code == 202, r.text

    job = stack.wait(r.json()["id"], timeout=30)

    assert job["status"] == "failed" and job["attempt"] == 2, job
    assert job["error"]["type"] == "timeout"
    spans = beat_spans(record)
    assert set(spans) == {1, 2}
    for attempt in (1, 2):
        assert spans[attempt][1] - spans[attempt][0] < 3  # stopped near its 2-s timeout
    assert spans[1][1] < spans[2][0]  # the retry began after the first attempt's last beat


def test_a_payload_changed_in_redis_is_refused_by_a_forking_worker(
    make_stack: Callable[..., Stack],
    settings: Settings,
    redis_conn: Redis,
    ledger_rows: Ledger,
    tmp_path: Path,
    test_tasks: None,
) -> None:
    stack = make_stack(**TEST_TASKS)
    recorded, planted = tmp_path / "recorded", tmp_path / "planted"
    job_id = stack.submit("mark", path=str(recorded))
    # An intruder rewrites the job hash with other args (and queues it once more).
    _deliver_again(settings, redis_conn, job_id, {"path": str(planted)}, "mark")

    stack.worker("w")
    job = stack.wait(job_id)
    after = stack.wait(stack.submit("echo", value="after"))

    assert job["status"] == "failed" and job["error"]["type"] == "payload_mismatch", job
    assert not recorded.exists() and not planted.exists()  # nothing ran
    assert after["status"] == "finished"
    assert ledger_rows.row(after["id"])["worker"] == "w"  # type: ignore[index]  # it goes on
