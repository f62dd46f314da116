"""Bulk operations with real workers: running jobs canceled by a filter are stopped on their
workers, and a bulk retry from the shell runs them again."""

import json
import subprocess
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from service.client import JobsClient
from tests.e2e.conftest import BIN, FAST, Stack, wait_until
from tests.support import Ledger, make_key

pytestmark = pytest.mark.e2e


def test_cancel_running_and_queued_jobs_by_task_then_retry_some(
    make_stack: Callable[..., Stack], api_key: str, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    stack = make_stack(**FAST)
    stack.named_workers(w1=False, w2=False)
    sleepers = [stack.submit("sleep", seconds=30) for _ in range(5)]
    wait_until(lambda: ledger_rows.count("status = 'started'") == 2, 20, "two running")

    with JobsClient(str(stack.http.base_url), api_key) as jobs:
        dry = jobs.cancel_many(task="sleep", dry_run=True)
        done = jobs.cancel_many(task="sleep")
        assert (dry["matched"], dry["affected"]) == (5, 0)
        assert (done["matched"], done["affected"]) == (5, 5)
        echo = jobs.submit("echo", {"value": 1})
        assert jobs.wait(echo["id"], timeout=20)["status"] == "finished"  # workers are free

    assert all(stack.job(j)["status"] == "canceled" for j in sleepers)
    stopped = [j for j in sleepers if "started" in ledger_rows.statuses(j)]
    assert len(stopped) == 2 and all(stack.job(j)["finished_at"] for j in stopped)

    env = {**stack.env, "JOBS_URL": str(stack.http.base_url)}
    admin = make_key(sql_engine, "ops", admin=True)
    shell = subprocess.run(
        [str(BIN / "jobsvc"), "bulk", "retry", "--task", "sleep", "--limit", "2", "--key", admin],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    retried = json.loads(shell.stdout)
    assert (retried["matched"], retried["affected"]) == (5, 2)
    listed = subprocess.run(
        [str(BIN / "jobsvc"), "queues", "list", "--key", admin],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "default" in listed.stdout and "workers 2" in listed.stdout
    wait_until(lambda: ledger_rows.count("status = 'started'") == 2, 20, "the two retried run")
    with JobsClient(str(stack.http.base_url), api_key) as jobs:  # and the workers are free
        assert jobs.cancel_many(task="sleep")["affected"] == 2
