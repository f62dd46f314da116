"""Long responses hold no pooled connection: while many clients read a large artifact
slowly, submits and listings still answer."""

import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import TEST_TASKS, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_slow_artifact_readers_leave_the_pool_to_others(
    make_stack: Callable[..., Stack], api_key: str
) -> None:
    stack = make_stack(**TEST_TASKS, JOBS_DB_POOL_SIZE="4", JOBS_DB_CONNECT_TIMEOUT_S="2")
    stack.worker("w")
    job_id = stack.submit("big_artifact", size=20 * 1024 * 1024)
    assert stack.wait(job_id, timeout=60)["status"] == "finished"

    readers = []
    with httpx.Client(
        base_url=str(stack.http.base_url),
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=100),
    ) as slow:
        try:
            for _ in range(60):  # each reads one chunk, then stalls
                stream = slow.stream("GET", f"/jobs/{job_id}/artifact")
                response = stream.__enter__()
                assert response.status_code == 200
                next(response.iter_bytes(65536))
                readers.append(stream)
            time.sleep(0.5)

            submitted = stack.http.post("/jobs", json={"task": "echo", "args": {"value": 1}})
            listed = stack.http.get("/jobs", params={"limit": 5})
            polled = stack.http.get(f"/jobs/{job_id}")
        finally:
            for stream in readers:
                stream.__exit__(None, None, None)

    assert submitted.status_code == 202, submitted.text
    assert listed.status_code == 200, listed.text
    assert polled.status_code == 200, polled.text
