"""Canceling a running job through HTTP, on each kind of worker."""

import pytest

from tests.e2e.conftest import Stack
from tests.support import Ledger

pytestmark = pytest.mark.e2e


def test_cancel_stops_a_running_job_on_a_forking_worker(stack: Stack, ledger_rows: Ledger) -> None:
    stack.worker("w")
    job_id = stack.submit("sleep", seconds=30)
    assert stack.wait(job_id, ("started",))["status"] == "started"

    r = stack.http.post(f"/jobs/{job_id}/cancel")

    assert r.status_code == 200
    assert r.json()["status"] == "canceled"
    assert r.json()["notice"] == "canceled while running: its work horse was stopped"
    # the work horse is gone: the worker is free for the next job at once
    nxt = stack.wait(stack.submit("echo", value="next"), timeout=10)
    assert nxt["status"] == "finished"
    assert ledger_rows.statuses(job_id) == ["queued", "started", "canceled"]
    assert stack.job(job_id)["status"] == "canceled"


def test_cancel_on_a_simple_worker_is_requested_and_the_outcome_discarded(
    stack: Stack, ledger_rows: Ledger
) -> None:
    stack.worker("w", simple=True)
    job_id = stack.submit("sleep", seconds=1.5)
    assert stack.wait(job_id, ("started",))["status"] == "started"

    r = stack.http.post(f"/jobs/{job_id}/cancel")

    assert r.status_code == 202
    assert r.json()["status"] == "canceled"
    assert r.json()["notice"].startswith("cancel requested: the worker runs jobs in-process")
    # the sleep runs to its end; its outcome does not overwrite the cancel
    nxt = stack.wait(stack.submit("echo", value="next"), timeout=15)
    assert nxt["status"] == "finished"
    job = stack.job(job_id)
    assert job["status"] == "canceled" and job["result"] is None
    assert ledger_rows.statuses(job_id) == ["queued", "started", "canceled"]
