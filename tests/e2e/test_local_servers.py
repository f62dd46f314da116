"""`jobsvc run` on a machine where PostgreSQL and Redis are not (ours): it starts
project-local real servers, migrates, and serves; Ctrl-C stops everything."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from service.localservers import LocalPostgres, LocalRedis, free_port, port_open
from tests.e2e.conftest import BIN

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
    api_port, dash_port = free_port(), free_port()
    pg_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "JOBS_LOCAL_SERVERS": "always",
        "JOBS_DEV_MODE": "1",  # as `make run` sets it
        "JOBS_DATA_DIR": str(tmp_path / "data"),
        "JOBS_LOCAL_PG_PORT": str(pg_port),
        "JOBS_LOCAL_REDIS_PORT": str(redis_port),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "jobsvc"),
                "run",
                "--port",
                str(api_port),
                "--dashboard-port",
                str(dash_port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:
            wait_until_logged(lambda: _ok(http, "/readyz"), 120, log)
            job_id = http.post("/jobs", json={"task": "echo", "args": {"value": "local"}}).json()[
                "id"
            ]
            wait_until_logged(
                lambda: http.get(f"/jobs/{job_id}").json()["status"] == "finished", 60, log
            )
            assert http.get(f"/jobs/{job_id}").json()["result"] == "local"
        with httpx.Client(base_url=f"http://127.0.0.1:{dash_port}", timeout=10) as dash:
            wait_until_logged(lambda: _ok(dash, "/0/data/queues.json"), 30, log)
        text = log.read_text()
        assert f"using project-local PostgreSQL on 127.0.0.1:{pg_port}" in text
        assert f"using project-local Redis on 127.0.0.1:{redis_port}" in text

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(60) == 0, log.read_text()
        for port in (api_port, dash_port, pg_port, redis_port):
            wait_until_logged(lambda p=port: not port_open("127.0.0.1", p), 20, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        LocalPostgres(tmp_path / "data" / "postgres", pg_port).stop()
        LocalRedis(tmp_path / "data" / "redis", redis_port).stop()


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
