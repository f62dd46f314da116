"""`jobsvc worker --processes N`: N workers under one command, which runs N jobs at once,
starts a worker that dies again (after a pause if it fails at once), and stops them all on
one signal. A worker's start is a handful of log lines."""

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Stack, children, wait_until

pytestmark = pytest.mark.e2e


def _span(job: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"])


def test_two_processes_run_two_jobs_at_once_and_stop_together(stack: Stack) -> None:
    proc = stack.start("pool", "jobsvc", "worker", "--processes", "2", "--name", "pool")
    stack.wait_for_log("pool", "worker pool-1 ready")
    stack.wait_for_log("pool", "worker pool-2 ready")
    workers = children(proc.pid)
    assert len(workers) == 2

    first, second = stack.submit("sleep", seconds=2), stack.submit("sleep", seconds=2)
    a, b = stack.wait(first), stack.wait(second)
    assert a["status"] == b["status"] == "finished", (a, b, stack.log("pool"))
    (a_start, a_end), (b_start, b_end) = _span(a), _span(b)
    assert a_start < b_end and b_start < a_end  # they ran at the same time

    os.kill(workers[0], signal.SIGKILL)  # a worker dies (the OOM killer, say)
    stack.wait_for_log("pool", "starting it again")
    wait_until(lambda: len(children(proc.pid)) == 2, 20, "the replacement worker")
    wait_until(lambda: stack.log("pool").count("ready (LedgerWorker)") == 3, 20, "it to start")
    again = stack.wait(stack.submit("echo", value="after"))
    assert again["status"] == "finished", stack.log("pool")

    every = children(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 0, stack.log("pool")
    stack.procs.pop("pool")
    for pid in every:
        wait_until(lambda p=pid: not _alive(p), 10, f"worker {pid} to exit")
    assert "workers stopped" in stack.log("pool")


def test_a_workers_start_is_a_handful_of_lines(stack: Stack) -> None:
    stack.worker("w1")
    job_id = stack.submit("echo", value="x")
    assert stack.wait(job_id)["status"] == "finished"
    lines = stack.log("w1").splitlines()
    start = lines[: next(i for i, line in enumerate(lines) if job_id in line)]
    assert len(start) <= 5, "\n".join(start)
    assert "cleaning registries" not in stack.log("w1")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_stop_at_once_when_asked_after_their_jobs(stack: Stack) -> None:
    """A warm stop of an idle worker ends it at once (the thread that listens for RQ's
    commands once held it for up to a minute, one time in two)."""
    stack.named_workers(a=False, b=True, c=False)
    for job_id in [stack.submit("echo", value=n) for n in range(6)]:
        assert stack.wait(job_id)["status"] == "finished"
    procs = [stack.procs[name] for name in ("a", "b", "c")]
    for proc in procs:
        os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        assert proc.wait(10) == 0


# The command with a worker that fails at once while a file exists (Redis away, say).
FLAKY = """
import logging, sys, time
from pathlib import Path
from service import workers
from service.settings import get_settings

def run(*args, **kwargs):
    if Path(sys.argv[1]).exists():
        sys.exit(3)
    time.sleep(600)

logging.basicConfig(level=logging.INFO, format="%(message)s")
workers.run = run
status = workers.supervise(get_settings(), ["q"], count=1, simple=True, burst=False, name="w")
sys.exit(status)
"""


def test_a_replacement_that_fails_at_once_is_tried_again_after_a_pause(tmp_path: Path) -> None:
    """Only a first start that fails stops the command; a replacement that fails backs off
    (1 s, 2 s, …) and the command goes on."""
    failing, log = tmp_path / "failing", tmp_path / "pool.log"
    command = [str(BIN / "python"), "-c", FLAKY, str(failing)]
    env = {**os.environ, "JOBS_TASK_MODULES": "jobs.builtin"}  # a quicker start
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out, env=env)
    try:
        wait_until(lambda: len(children(proc.pid)) == 1, 20, "the worker")
        failing.touch()
        os.kill(children(proc.pid)[0], signal.SIGKILL)
        wait_until(lambda: "starting it again in 2 s" in log.read_text(), 20, "a second pause")
        assert proc.poll() is None, log.read_text()
        assert "w-1 (pid" in log.read_text() and "starting it again in 1 s" in log.read_text()
        failing.unlink()
        wait_until(lambda: len(children(proc.pid)) == 1, 20, "the worker back")
        time.sleep(0.5)
        assert len(children(proc.pid)) == 1 and proc.poll() is None, log.read_text()
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    failing.touch()  # the first start fails: the command stops
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1, done.stderr
    assert "w-1 (pid" in done.stderr and "during start-up; stopping the others" in done.stderr
