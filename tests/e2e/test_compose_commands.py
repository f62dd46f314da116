"""Each compose service's command, run here as it is written (host and port moved to
loopback and free ports), against this machine's test servers: migrate, api, worker,
reconciler and the dashboard, which must show the job the API enqueued by its task name."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.localservers import free_port
from service.settings import Settings
from tests.e2e.conftest import BIN, Stack, get_when_up
from tests.support import RUN_ID, create_fresh_database, drop_database
from tests.test_compose import compose

pytestmark = pytest.mark.e2e


def local(command: list[str], port: int) -> list[str]:
    """The compose command with its --host on loopback and its --port free here."""
    out = list(command)
    if "--host" in out:
        out[out.index("--host") + 1] = "127.0.0.1"
    if "--port" in out:
        out[out.index("--port") + 1] = str(port)
    return out


@pytest.fixture
def fresh_database(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"jobsvc_test_compose_{RUN_ID}"
    url = create_fresh_database(settings, name)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    drop_database(settings, name)


def test_compose_commands_bring_up_a_working_stack(
    tmp_path: Path, fresh_database: str, redis_conn: object
) -> None:
    services = compose()["services"]
    dashboard_login = {"JOBS_DASHBOARD_USERNAME": "ops", "JOBS_DASHBOARD_PASSWORD": "s3cret-pw"}
    stack = Stack(tmp_path, "", dashboard_login)
    try:
        migrate = stack.start("migrate", *services["migrate"]["command"])
        assert migrate.wait(60) == 0, stack.log("migrate")
        key = subprocess.run(
            [str(BIN / "jobsvc"), "keys", "create", "compose-admin", "--admin"],
            capture_output=True, text=True, check=True, env=stack.env,
        ).stdout.strip()  # fmt: skip
        stack.http.headers["Authorization"] = f"Bearer {key}"

        stack.api(*local(services["api"]["command"], stack.port))
        stack.start("worker", *services["worker"]["command"])
        stack.wait_for_log("worker", "ready")
        stack.start("reconciler", *services["reconciler"]["command"])
        stack.wait_for_log("reconciler", "ready")
        dashboard_port = free_port()
        stack.start("dashboard", *local(services["dashboard"]["command"], dashboard_port))
        stack.wait_for_log("dashboard", "ready")

        assert stack.http.get("/readyz").status_code == 200
        done = stack.wait(stack.submit("echo", value="through compose"))
        assert done["status"] == "finished"
        assert done["result"] == "through compose"
        waiting = stack.submit("sleep", seconds=60)  # holds the worker, so the next one queues
        assert stack.wait(waiting, ("started",))["status"] == "started"
        queued = stack.submit("echo", value="queued")

        with httpx.Client(
            base_url=f"http://127.0.0.1:{dashboard_port}",
            timeout=10,
            follow_redirects=True,
            auth=("ops", "s3cret-pw"),
        ) as dash:
            page = get_when_up(dash, "/")
            assert page.status_code == 200
            assert "RQ" in page.text
            queues = get_when_up(dash, "/0/data/queues.json").json()
            assert {q["name"]: q["count"] for q in queues["queues"]}["default"] == 1
            listed = get_when_up(dash, "/0/data/jobs/default/queued/8/asc/1.json").json()
            assert [j["id"] for j in listed["jobs"]] == [queued]
            assert listed["jobs"][0]["description"] == "echo"
            detail = get_when_up(dash, f"/0/data/job/{queued}.json").json()
            assert detail["description"] == "echo"
            assert detail["origin"] == "default"
    finally:
        stack.close()
