"""Real processes: `jobsvc api` (uvicorn) and `jobsvc worker`, driven over HTTP."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from service.localservers import free_port

BIN = Path(sys.executable).parent
FINAL = ("finished", "failed", "canceled")


ROOT = Path(__file__).resolve().parents[2]

# The tasks of `tests.tasks` beside the real ones, for processes that must run them.
TEST_TASKS = {
    "JOBS_TASK_MODULES": "jobs.builtin,jobs.email,jobs.reports,jobs.images,jobs.webhooks,"
    "jobs.analytics,tests.tasks",
    "PYTHONPATH": str(ROOT),
}

# The retention clean-up fires at the top of each hour by default: a test that spans one
# would see one more job than it made. Tests that want it set their own.
QUIET = {"JOBS_CLEANUP_CRON": "0 0 1 1 *"}

# Fast repairs for tests: short leases, frequent reconciler passes.
FAST = {
    "JOBS_LEASE_S": "6",
    "JOBS_REDELIVER_AFTER_S": "1",
    "JOBS_RECONCILE_INTERVAL_S": "0.2",
}


class Stack:
    """Processes of this project started for one test, all stopped by `close()`."""

    def __init__(self, log_dir: Path, key: str, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **QUIET, **(env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=10,
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )

    def start(self, name: str, command: str, *args: str) -> subprocess.Popen[bytes]:
        """Start a console script of this environment (`jobsvc`, `alembic`) as a process."""
        with open(self.log_dir / f"{name}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [str(BIN / command), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def api(self, *command: str) -> None:
        self.start("api", *(command or ("jobsvc", "api", "--port", str(self.port))))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"API did not come up: {self.log('api')}")

    def worker(self, name: str, *, simple: bool = False) -> subprocess.Popen[bytes]:
        proc = self.start(
            name, "jobsvc", "worker", *(["--simple"] if simple else []), "--name", name
        )
        self.wait_for_log(name, "ready")
        return proc

    def workers(self, count: int) -> None:
        """`count` workers, `w0`, `w1`, …, every other one `--simple`, started together
        (each takes a second to come up)."""
        self.named_workers(**{f"w{n}": bool(n % 2) for n in range(count)})

    def named_workers(self, **simple: bool) -> None:
        """Workers by name, each `--simple` or not, started together."""
        for name, is_simple in simple.items():
            self.start(
                name, "jobsvc", "worker", *(["--simple"] if is_simple else []), "--name", name
            )
        for name in simple:
            self.wait_for_log(name, "ready")

    def reconciler(self, name: str = "reconciler") -> subprocess.Popen[bytes]:
        proc = self.start(name, "jobsvc", "reconcile")
        self.wait_for_log(name, "ready")
        return proc

    def cli(self, *args: str) -> str:
        """Run `jobsvc <args>` with this stack's settings; its output."""
        done = subprocess.run(
            [str(BIN / "jobsvc"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()

    def kill(self, name: str) -> None:
        """SIGKILL a process and its children (a work horse has its own process group)."""
        proc = self.procs.pop(name)
        for pid in [proc.pid, *children(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_for_log(self, name: str, needle: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log(name):
            assert self.procs[name].poll() is None, self.log(name)
            assert time.monotonic() < deadline, f"{name} never logged {needle!r}: {self.log(name)}"
            time.sleep(0.1)

    def submit(self, task: str, **args: Any) -> str:
        r = self.http.post("/jobs", json={"task": task, "args": args})
        assert r.status_code == 202, r.text
        job_id: str = r.json()["id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    def wait(
        self, job_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in statuses or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

    def stop(self, *names: str) -> None:
        """SIGTERM, then SIGKILL after 3 s; work horses (their own process group) too, so
        no job outlives its test. Several names: signalled together, then waited for."""
        procs = [self.procs.pop(name) for name in names]
        horses = []
        for proc in procs:
            if proc.poll() is None:
                horses += children(proc.pid)
                os.killpg(proc.pid, signal.SIGTERM)  # a worker busy with a job waits for it
        deadline = time.monotonic() + 3
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for pid in horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop(*self.procs)
        self.http.close()


def children(pid: int) -> list[int]:
    ps = ["ps", "-o", "pid=", "--ppid", str(pid)]
    return [int(p) for p in subprocess.run(ps, capture_output=True, text=True).stdout.split()]


@pytest.fixture
def make_stack(tmp_path: Path, api_key: str) -> Iterator[Callable[..., Stack]]:
    """Stacks with extra settings for their processes; the API is up, the rest is the test's."""
    made: list[Stack] = []

    def make(**env: str) -> Stack:
        s = Stack(tmp_path / f"stack{len(made)}", api_key, env)
        (tmp_path / f"stack{len(made)}").mkdir()
        made.append(s)
        s.api()
        return s

    try:
        yield make
    finally:
        for s in made:
            s.close()


@pytest.fixture
def stack(tmp_path: Path, api_key: str) -> Iterator[Stack]:
    s = Stack(tmp_path, api_key)
    try:
        s.api()
        yield s
    finally:
        s.close()


def get_when_up(client: httpx.Client, path: str, timeout: float = 20) -> httpx.Response:
    """GET `path` once the server behind `client` accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get(path)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Inbox:
    """What a loopback SMTP server (aiosmtpd) received."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
