"""`jobsvc run` on a machine where PostgreSQL and Redis are not (ours): it starts
project-local real servers, migrates, and serves; Ctrl-C stops everything."""

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from service import signing
from service.localservers import LocalPostgres, LocalRedis, free_port, port_open
from tests.e2e.conftest import BIN, FINAL, children
from tests.support import QuietHandler, loopback_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_local_servers_start_serve_and_stop(tmp_path: Path) -> None:
    pg = LocalPostgres(tmp_path / "pg", free_port())
    rd = LocalRedis(tmp_path / "redis", free_port())
    try:
        pg.start()
        rd.start()
        assert port_open("127.0.0.1", pg.port)
        assert port_open("127.0.0.1", rd.port)
        from redis import Redis

        with Redis(port=rd.port) as r:
            assert r.ping()
    finally:
        pg.stop()
        rd.stop()
    deadline = time.monotonic() + 10
    while (port_open("127.0.0.1", pg.port) or port_open("127.0.0.1", rd.port)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not port_open("127.0.0.1", pg.port)
    assert not port_open("127.0.0.1", rd.port)


def test_jobsvc_run_brings_up_its_own_servers(tmp_path: Path) -> None:
    """`make run` as a new user runs it: its own servers, two workers, dev mode (every
    built-in task runs: mail kept in a sink, callbacks signed); Ctrl-C stops everything
    within seconds, a running job and an open long-poll included."""
    api_port, dash_port = free_port(), free_port()
    pg_port, redis_port = free_port(), free_port()
    data = tmp_path / "data"
    own = ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")  # the run makes its own
    env = {k: v for k, v in os.environ.items() if k not in own} | {
        "JOBS_LOCAL_SERVERS": "always",
        "JOBS_DEV_MODE": "1",  # as `make run` sets it
        "JOBS_DATA_DIR": str(data),
        "JOBS_LOCAL_PG_PORT": str(pg_port),
        "JOBS_LOCAL_REDIS_PORT": str(redis_port),
        "JOBS_API_PORT": str(api_port),  # as `JOBS_API_PORT=… make run` sets them
        "JOBS_DASHBOARD_PORT": str(dash_port),
        "JOBS_WORKERS": "2",
        "JOBS_CALLBACK_BACKOFF_S": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "jobsvc"), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    receiver = Receiver()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=70) as http:
            wait_until_logged(lambda: "ready in" in log.read_text(), 120, log)
            assert _ok(http, "/readyz")

            def submit(body: dict[str, object]) -> str:
                r = http.post("/jobs", json=body)
                assert r.status_code == 202, r.text
                return str(r.json()["id"])

            def final(job_id: str) -> dict[str, object]:
                wait_until_logged(
                    lambda: http.get(f"/jobs/{job_id}").json()["status"] in FINAL, 60, log
                )
                job: dict[str, object] = http.get(f"/jobs/{job_id}").json()
                return job

            echo = submit(
                {"task": "echo", "args": {"value": "local"}, "callback_url": receiver.url}
            )
            mail = submit(
                {
                    "task": "send_email",
                    "args": {"to": ["ada@example.com"], "subject": "Welcome", "text": "Hi"},
                }
            )
            assert final(echo)["result"] == "local"
            assert final(mail)["status"] == "finished", log.read_text()[-3000:]
            kept = list((data / "mail").glob("*.eml"))
            assert len(kept) == 1 and b"Subject: Welcome" in kept[0].read_bytes()
            assert f"kept in {kept[0].parent}" in log.read_text()
            assert f"{kept[0].name}" in log.read_text()
            wait_until_logged(lambda: receiver.bodies, 30, log)
            secret = (data / "callback-secret").read_text().strip().encode()
            signature, body = receiver.bodies[0]
            assert signing.verify(secret, signature, body)

            running = submit({"task": "sleep", "args": {"seconds": 60}})
            wait_until_logged(
                lambda: http.get(f"/jobs/{running}").json()["status"] == "started", 30, log
            )
            poll = threading.Thread(target=long_poll, args=(http.base_url, running))
            poll.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{dash_port}", timeout=10) as dash:
            assert _ok(dash, "/0/data/queues.json")
        text = log.read_text()
        assert f"using project-local PostgreSQL on 127.0.0.1:{pg_port}" in text
        assert f"using project-local Redis on 127.0.0.1:{redis_port}" in text
        assert "development server" not in text and "\\u001b" not in text
        assert len(list(data.glob("metrics-*"))) == 1  # this run's own, under JOBS_DATA_DIR

        processes = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        stopping = time.monotonic()
        assert proc.wait(20) == 0, log.read_text()[-3000:]
        assert time.monotonic() - stopping < 10, log.read_text()[-3000:]
        assert "stopped in" in log.read_text()
        assert not list(data.glob("metrics-*"))
        poll.join(10)
        for pid in processes:
            wait_until_logged(lambda p=pid: not alive(p), 10, log)
        for port in (api_port, dash_port, pg_port, redis_port):
            wait_until_logged(lambda p=port: not port_open("127.0.0.1", p), 20, log)
    finally:
        receiver.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        LocalPostgres(data / "postgres", pg_port).stop()
        LocalRedis(data / "redis", redis_port).stop()


class Receiver:
    """A loopback HTTP server (`loopback_server`) that keeps each callback's signature and
    body."""

    def __init__(self) -> None:
        bodies: list[tuple[str, bytes]] = []

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                bodies.append((self.headers[signing.HEADER], body))
                self.send_response(204)
                self.end_headers()

        self.bodies = bodies
        self._serving = loopback_server(Handler)
        self.url = self._serving.__enter__()

    def close(self) -> None:
        self._serving.__exit__(None, None, None)


def long_poll(base_url: httpx.URL, job_id: str) -> None:
    """Wait for the job over a long-poll that the stack's stop ends (closed or answered)."""
    with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=base_url, timeout=70) as c:
        c.get(f"/jobs/{job_id}?wait=60")


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_logged(condition: object, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
