"""What operators see: /metrics summed over API, worker and reconciler processes, and JSON
log lines that carry the job they are about."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FAST, Stack, wait_until

pytestmark = pytest.mark.e2e


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample line of a Prometheus exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics_add_up_the_api_worker_and_reconciler(make_stack: Any, tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    stack: Stack = make_stack(PROMETHEUS_MULTIPROC_DIR=str(shared), **FAST)
    echoes = [stack.submit("echo", value=i) for i in range(3)]
    r = stack.http.post(
        "/jobs", json={"task": "fail", "args": {}, "max_attempts": 2, "backoff_s": 0}
    )
    failing = r.json()["id"]
    stack.worker("w", simple=True)
    stack.reconciler()
    for job_id in echoes:
        assert stack.wait(job_id)["status"] == "finished"
    assert stack.wait(failing)["status"] == "failed"

    r = stack.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)

    assert m['jobsvc_jobs_submitted_total{task="echo"}'] == 3
    assert m['jobsvc_jobs_submitted_total{task="fail"}'] == 1
    assert m['jobsvc_jobs_started_total{task="echo"}'] == 3
    assert m['jobsvc_jobs_finished_total{task="echo"}'] == 3
    assert m['jobsvc_jobs_retried_total{task="fail"}'] == 1
    assert m['jobsvc_jobs_failed_total{task="fail"}'] == 1
    assert m['jobsvc_job_run_seconds_count{task="echo"}'] == 3
    assert m['jobsvc_job_queue_wait_seconds_count{task="fail"}'] == 2
    assert m["jobsvc_reconcile_passes_total"] >= 1  # the retry came back through it
    assert m['jobsvc_reconcile_repairs_total{repair="released"}'] >= 1
    assert m['jobsvc_ledger_jobs{status="finished"}'] == 3
    assert m['jobsvc_ledger_jobs{status="failed"}'] == 1
    assert m['jobsvc_queue_depth{queue="default"}'] == 0
    assert m['jobsvc_http_requests_total{method="POST",route="/jobs",status="202"}'] == 4
    assert m['jobsvc_http_request_seconds_count{method="GET",route="/jobs/{job_id}"}'] >= 4


def test_queue_depth_counts_jobs_no_worker_took(stack: Stack) -> None:
    for _ in range(4):
        stack.submit("echo", value=1)
    m = _samples(stack.http.get("/metrics").text)
    assert m['jobsvc_queue_depth{queue="default"}'] == 4
    assert m['jobsvc_ledger_jobs{status="queued"}'] == 4


def test_each_queue_s_backlog_and_its_oldest_wait(stack: Stack) -> None:
    """The autoscaling signals, from the ledger: a queue's waiting jobs and how long the
    oldest has waited, for every queue (0 where none waits)."""
    first = stack.submit("echo", value=1)
    for _ in range(2):
        stack.submit("echo", value=2)
    stack.submit("send_email", to=["a@example.com"], subject="s", text="b")
    wait_until(
        lambda: (
            _samples(stack.http.get("/metrics").text)[
                'jobsvc_queue_oldest_age_seconds{queue="email"}'  # the one submitted last
            ]
            >= 1.0
        ),
        timeout=5,
        what="the oldest job's wait to pass a second",
    )
    assert stack.http.post(f"/jobs/{first}/cancel").status_code == 200

    m = _samples(stack.http.get("/metrics").text)
    assert m['jobsvc_queue_backlog{queue="default"}'] == 2
    assert m['jobsvc_queue_backlog{queue="email"}'] == 1
    assert m['jobsvc_queue_backlog{queue="reports"}'] == 0
    assert m['jobsvc_queue_oldest_age_seconds{queue="reports"}'] == 0
    assert 1.0 <= m['jobsvc_queue_oldest_age_seconds{queue="email"}'] < 60
    assert m['jobsvc_queue_oldest_age_seconds{queue="default"}'] >= 1.0


def test_log_lines_are_json_with_the_job_they_are_about(stack: Stack) -> None:
    job_id = stack.submit("fail", message="boom")
    stack.worker("w", simple=True)
    assert stack.wait(job_id)["status"] == "failed"
    wait_until(lambda: f"job {job_id} failed" in stack.log("w"), 10, "the outcome log line")

    lines = [json.loads(line) for line in stack.log("w").splitlines() if line.startswith("{")]
    about = [line for line in lines if line.get("job_id") == job_id]
    assert about, stack.log("w")
    for line in about:
        assert line["task"] == "fail"
        assert line["attempt"] == 1
        assert line["worker"] == "w"
        assert re.match(r"\d{4}-\d\d-\d\dT", line["ts"])
    assert any(line["message"] == f"job {job_id} failed" for line in about)
    api_lines = [line for line in stack.log("api").splitlines() if line.strip()]
    assert api_lines and all(json.loads(line)["level"] for line in api_lines)
