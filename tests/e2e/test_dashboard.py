"""rq-dashboard never runs open, and cannot change jobs behind the ledger's back."""

import pickle
import subprocess
from pathlib import Path

import httpx
import pytest
from redis import Redis

from service.localservers import free_port
from tests.e2e.conftest import BIN, Stack, get_when_up
from tests.jobs.test_payloads import Exploit

pytestmark = pytest.mark.e2e


def test_refuses_to_start_without_credentials() -> None:
    done = subprocess.run(
        [str(BIN / "jobsvc"), "dashboard", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "the dashboard needs JOBS_DASHBOARD_USERNAME and JOBS_DASHBOARD_PASSWORD" in done.stderr


def test_basic_auth_and_read_only(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    stack.env.update(JOBS_DASHBOARD_USERNAME="ops", JOBS_DASHBOARD_PASSWORD="pa55-word")
    stack.start("dashboard", "jobsvc", "dashboard", "--port", str(port))
    stack.wait_for_log("dashboard", "ready")
    job_id = stack.submit("echo", value="x")
    base = f"http://127.0.0.1:{port}"

    with httpx.Client(base_url=base, timeout=10) as anonymous:
        r = get_when_up(anonymous, "/0/data/queues.json")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic")
    with httpx.Client(base_url=base, timeout=10, auth=("ops", "wrong")) as wrong:
        assert wrong.get("/0/data/queues.json").status_code == 401
    with httpx.Client(base_url=base, timeout=10, auth=("ops", "pa55-word")) as ops:
        assert ops.get("/0/data/queues.json").status_code == 200
        for path in (f"/job/{job_id}/requeue", "/requeue/default", f"/job/{job_id}/delete"):
            refused = ops.post(path)
            assert refused.status_code == 403, path
            assert "retry jobs through the API" in refused.text
    assert "pa55-word" not in stack.log("dashboard")
    assert "development server" not in stack.log("dashboard")  # waitress serves it


def test_a_job_page_never_unpickles(stack: Stack, tmp_path: Path, redis_conn: Redis) -> None:
    """A job hash whose `meta` an intruder replaced with a pickle: opening the job's page
    (whose view rq-dashboard 0.9 reads without the JSON serializer) runs nothing."""
    port = free_port()
    stack.env.update(JOBS_DASHBOARD_USERNAME="ops", JOBS_DASHBOARD_PASSWORD="pa55-word")
    stack.start("dashboard", "jobsvc", "dashboard", "--port", str(port))
    stack.wait_for_log("dashboard", "ready")
    job_id = stack.submit("echo", value="x")
    marker = tmp_path / "pwned"
    redis_conn.hset(f"rq:job:{job_id}", "meta", pickle.dumps(Exploit(marker)))

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("ops", "pa55-word")) as ops:
        page = get_when_up(ops, f"/0/view/job/{job_id}")

    assert not marker.exists()
    assert page.status_code == 200 and job_id in page.text
