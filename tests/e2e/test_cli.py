"""`jobsvc` commands as a user runs them: set-up, clear failures, and the stock `rq worker`."""

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import make_url

from service.localservers import free_port
from service.settings import Settings
from tests.e2e.conftest import BIN, Stack
from tests.support import RUN_ID, drop_database

pytestmark = pytest.mark.e2e


def jobsvc(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "jobsvc"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_create_creates_a_missing_database_once(settings: Settings) -> None:
    name = f"jobsvc_test_created_{RUN_ID}"
    url = make_url(str(settings.database_url)).set(database=name).render_as_string(False)
    drop_database(settings, name)
    try:
        first = jobsvc("db", "create", DATABASE_URL=url)
        second = jobsvc("db", "create", DATABASE_URL=url)
    finally:
        drop_database(settings, name)
    assert first.returncode == 0
    assert f"created database {url}" in first.stdout
    assert second.returncode == 0
    assert "exists" in second.stdout


@pytest.mark.parametrize("command", [["api"], ["worker", "--burst"], ["db", "create"]])
def test_unreachable_postgres_is_a_clear_error(command: list[str]) -> None:
    url = f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{free_port()}/jobsvc"

    done = jobsvc(*command, DATABASE_URL=url)

    assert done.returncode == 2
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in done.stderr
    assert "PostgreSQL" in done.stderr or "database" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


@pytest.mark.parametrize("command", [["api"], ["worker", "--burst"], ["dashboard"]])
def test_unreachable_redis_is_a_clear_error(command: list[str]) -> None:
    port = free_port()

    done = jobsvc(
        *command,
        REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0",
        JOBS_DASHBOARD_USERNAME="ops",
        JOBS_DASHBOARD_PASSWORD="pw",
    )

    assert done.returncode == 2
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_stock_rq_worker_with_the_ledger_class(stack: Stack, tmp_path: Path) -> None:
    from service.settings import Settings

    stack.start(
        "rq",
        "rq",
        "worker",
        "-w",
        "service.worker.LedgerWorker",
        "-S",
        "rq.serializers.JSONSerializer",
        "--url",
        str(Settings().redis_url),
        "default",
    )
    job = stack.wait(stack.submit("echo", value="via rq worker"))

    assert job["status"] == "finished"
    assert job["result"] == "via rq worker"
    events = stack.http.get(f"/jobs/{job['id']}/events").json()
    assert [e["status"] for e in events] == ["queued", "started", "finished"]
