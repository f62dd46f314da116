"""`generate_report`: the ledger's numbers as a downloadable artifact."""

import csv
import hashlib
import io

import pytest
from sqlalchemy import Engine

from tests.e2e.conftest import Stack
from tests.support import make_key

pytestmark = pytest.mark.e2e


def test_csv_report_of_your_jobs(stack: Stack) -> None:
    stack.worker("w")
    for i in range(3):
        stack.wait(stack.submit("echo", value=i))
    stack.wait(stack.submit("fail"))

    job = stack.wait(stack.submit("generate_report"))

    assert job["status"] == "finished", job
    assert job["progress"] == {"value": 1.0, "message": "done"}
    [info] = job["result"]["artifacts"]
    download = stack.http.get(f"/jobs/{job['id']}/artifact")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert len(download.content) == info["size"]
    assert hashlib.sha256(download.content).hexdigest() == info["sha256"]
    rows = {r["task"]: r for r in csv.DictReader(io.StringIO(download.text))}
    assert rows["echo"]["total"] == "3" and rows["echo"]["finished"] == "3"
    assert rows["echo"]["success_rate"] == "1.0"
    assert float(rows["echo"]["p50_s"]) >= 0
    assert rows["fail"]["failed"] == "1" and rows["fail"]["success_rate"] == "0.0"
    assert rows["fail"]["p50_s"] == ""  # no finished run to time


def test_another_clients_artifact_is_404(stack: Stack, sql_engine: Engine) -> None:
    stack.worker("w")
    job = stack.wait(stack.submit("generate_report"))
    assert job["status"] == "finished", job
    other = {"Authorization": f"Bearer {make_key(sql_engine, 'other')}"}

    for path in ("artifact", "artifacts/report.csv"):
        r = stack.http.get(f"/jobs/{job['id']}/{path}", headers=other)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/json"  # not the file
    assert stack.http.get(f"/jobs/{job['id']}/artifact").status_code == 200  # its owner's


def test_json_report_and_the_time_range(stack: Stack) -> None:
    stack.worker("w")
    first = stack.wait(stack.submit("echo", value=1))
    r = stack.http.post(
        "/jobs",
        json={
            "task": "generate_report",
            "args": {"format": "json", "until": first["created_at"]},
        },
    )

    job = stack.wait(r.json()["id"])

    download = stack.http.get(f"/jobs/{job['id']}/artifacts/report.json")
    assert download.headers["content-type"] == "application/json"
    assert download.json()["tasks"] == []  # `until` is exclusive: nothing before the first job


def test_artifact_is_404_until_the_job_finishes(stack: Stack) -> None:
    queued = stack.submit("generate_report")  # no worker yet

    r = stack.http.get(f"/jobs/{queued}/artifact")

    assert r.status_code == 404
    assert r.json()["detail"] == f"no artifact for job {queued}: the job is queued, not finished"
    echo = stack.submit("echo")
    stack.worker("w")
    stack.wait(echo)
    no_file = stack.http.get(f"/jobs/{echo}/artifact")
    assert no_file.status_code == 404
    assert "made no artifact" in no_file.json()["detail"]
    assert stack.http.get(f"/jobs/{stack.wait(queued)['id']}/artifacts/nope.csv").status_code == 404
