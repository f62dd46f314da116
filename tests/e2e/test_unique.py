"""Unique jobs through a real API of two processes: concurrent duplicates are one job."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.support import Ledger

pytestmark = pytest.mark.e2e


def test_twenty_concurrent_submits_across_processes_give_one_job(
    make_stack: Callable[..., Stack], api_key: str, ledger_rows: Ledger
) -> None:
    stack = make_stack(JOBS_API_WORKERS="2")
    body = {"task": "echo", "args": {"value": "sync-42"}, "unique_for_s": 300}

    def submit(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=str(stack.http.base_url), headers=stack.http.headers) as c:
            r = c.post("/jobs", json=body)
            return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(submit, range(20)))

    assert sorted(code for code, _ in answers) == [200] * 19 + [202]
    assert len({job_id for _, job_id in answers}) == 1
    assert ledger_rows.count() == 1
