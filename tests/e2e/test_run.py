"""`jobsvc run` against this machine's servers: what it needs is checked up front, a
process that cannot start is named and the rest are stopped, and none outlives it."""

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from service.localservers import free_port, port_open
from tests.e2e.conftest import BIN, wait_until
from tests.e2e.test_local_servers import alive, descendants

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JOBS_DASHBOARD_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    return kept | {"JOBS_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1", **settings}


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = ["run", "--port", str(free_port()), "--dashboard-port", str(free_port())]
    return subprocess.run(
        [str(BIN / "jobsvc"), *command], env=env, capture_output=True, text=True, timeout=120
    )


def test_outside_dev_mode_the_dashboards_credentials_are_asked_for_first(tmp_path: Path) -> None:
    done = _run(_env(tmp_path, JOBS_DEV_MODE="0"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("jobsvc: the dashboard needs JOBS_DASHBOARD_USERNAME and ")
    assert "JOBS_DASHBOARD_PASSWORD" in done.stderr and len(done.stderr.splitlines()) == 1


def test_dev_mode_without_aiosmtpd_says_what_to_install(tmp_path: Path) -> None:
    """As `pip install jobsvc` leaves it: no `local` extra (an aiosmtpd without its parts
    stands in for none)."""
    (tmp_path / "lib" / "aiosmtpd").mkdir(parents=True)
    (tmp_path / "lib" / "aiosmtpd" / "__init__.py").touch()
    done = _run(_env(tmp_path, JOBS_DEV_MODE="1", PYTHONPATH=str(tmp_path / "lib")))
    assert done.returncode == 2, done.stderr[-3000:]
    assert (
        "jobsvc: the dev-mode mail sink needs aiosmtpd: install jobsvc[local] or set "
        "JOBS_SMTP_HOST" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "data").glob("metrics-*"))  # the run's own, removed


def test_a_process_that_exits_is_named_and_the_rest_stop(tmp_path: Path) -> None:
    credentials = {"JOBS_DASHBOARD_USERNAME": "ops", "JOBS_DASHBOARD_PASSWORD": "pw"}
    # An API that cannot start: its --workers from the environment is out of range.
    done = _run(_env(tmp_path, JOBS_DEV_MODE="0", JOBS_API_WORKERS="0", **credentials))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "api exited with status 2" in done.stderr
    assert "Invalid value for '--workers'" in done.stderr
    assert "stopped in" in done.stderr


def test_ctrl_c_while_the_database_is_prepared_stops_without_an_error(tmp_path: Path) -> None:
    with socket.socket() as silent:  # a PostgreSQL that never answers: `db create` waits
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/jobsvc"
        env = _env(tmp_path, JOBS_DEV_MODE="1", DATABASE_URL=url, JOBS_DB_CONNECT_TIMEOUT_S="60")
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "jobsvc"), "run", "--port", str(free_port())],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: _running(proc.pid, "db create"), 60, "jobsvc db create")
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
            assert proc.wait(20) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert "stopped before the stack started" in log.read_text()
    assert "failed" not in log.read_text()


def _running(parent: int, command: str) -> bool:
    """A process below `parent` runs `jobsvc COMMAND`."""
    for pid in descendants(parent):
        with contextlib.suppress(FileNotFoundError):
            if command in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "):
                return True
    return False


def test_no_process_outlives_a_killed_run(tmp_path: Path) -> None:
    """SIGKILL leaves the command no chance to stop the others: each dies with it."""
    api_port, dash_port = free_port(), free_port()
    env = _env(tmp_path, JOBS_DEV_MODE="1", JOBS_API_PORT=str(api_port))
    env["JOBS_DASHBOARD_PORT"] = str(dash_port)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "jobsvc"), "run", "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes: list[int] = []
    try:
        wait_until(lambda: "ready in" in log.read_text(), 120, f"ready: {log.read_text()}")
        processes = descendants(proc.pid)
        assert len(processes) >= 6, processes  # api, reconciler, dashboard, pool of two
        proc.kill()
        proc.wait(10)
        for pid in processes:
            wait_until(lambda p=pid: not alive(p), 10, f"process {pid} to end")
        for port in (api_port, dash_port):
            assert not port_open("127.0.0.1", port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in processes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
