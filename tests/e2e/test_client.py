"""The Python client and the shell commands against a real API and worker."""

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest

from service.client import AsyncJobsClient, JobsClient, JobsError, WaitTimeout
from tests.e2e.conftest import BIN, Stack

pytestmark = pytest.mark.e2e


def _client(stack: Stack, key: str) -> JobsClient:
    return JobsClient(str(stack.http.base_url), key)


def test_sync_client_round_trip(stack: Stack, api_key: str) -> None:
    stack.worker("w", simple=True)
    with _client(stack, api_key) as jobs:
        job = jobs.submit("echo", {"value": [1, 2]}, idempotency_key="k-1", meta={"who": "me"})
        assert job["status"] in ("queued", "started", "finished")
        again = jobs.submit("echo", {"value": [1, 2]}, idempotency_key="k-1", meta={"who": "me"})
        assert again["id"] == job["id"]

        done = jobs.wait(job["id"], timeout=20)
        assert done["status"] == "finished"
        assert done["result"] == [1, 2]
        assert jobs.get(job["id"]) == done
        assert [e["status"] for e in jobs.events(job["id"])] == ["queued", "started", "finished"]
        assert [j["id"] for j in jobs.list(status="finished")["items"]] == [job["id"]]

        failed = jobs.wait(jobs.submit("fail", {"message": "x"})["id"], timeout=20)
        assert failed["status"] == "failed"
        retried = jobs.retry(failed["id"])
        assert retried["status"] == "queued"
        assert jobs.wait(failed["id"], timeout=20)["attempt"] == 2

        streamed = [event for event, _ in jobs.stream(job["id"])]
        assert streamed == ["queued", "started", "finished", "job"]

        with pytest.raises(JobsError) as unknown:
            jobs.submit("no_such_task")
        assert unknown.value.status_code == 422
        assert "unknown task" in str(unknown.value.detail)
        with pytest.raises(JobsError) as missing:
            jobs.get("00000000-0000-0000-0000-000000000000")
        assert missing.value.status_code == 404


def test_wait_gives_up_after_its_timeout_with_the_last_state(stack: Stack, api_key: str) -> None:
    with _client(stack, api_key) as jobs:  # no worker: the job stays queued
        job = jobs.submit("echo", {"value": 1})
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as timed_out:
            jobs.wait(job["id"], timeout=1.5)
        assert 1.5 <= time.monotonic() - started < 10
        assert timed_out.value.job["status"] == "queued"
        canceled = jobs.cancel(job["id"])
        assert canceled["status"] == "canceled"


def test_async_client_round_trip(stack: Stack, api_key: str) -> None:
    stack.worker("w", simple=True)

    async def scenario() -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
        async with AsyncJobsClient(str(stack.http.base_url), api_key) as jobs:
            submitted = await asyncio.gather(*(jobs.submit("echo", {"value": i}) for i in range(5)))
            finished = await asyncio.gather(*(jobs.wait(j["id"], timeout=20) for j in submitted))
            sleeper = await jobs.submit("sleep", {"seconds": 2.2})
            names = [event async for event, _ in jobs.stream(sleeper["id"])]
            page = await jobs.list(task="echo", limit=10)
            return page, names, list(finished)

    page, names, finished = asyncio.run(scenario())
    assert [job["result"] for job in finished] == [0, 1, 2, 3, 4]
    assert len(page["items"]) == 5
    assert names[:2] == ["queued", "started"]
    assert "progress" in names
    assert names[-2:] == ["finished", "job"]


def jobsvc(stack: Stack, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "JOBS_URL": str(stack.http.base_url), "JOBS_API_KEY": key}
    return subprocess.run(
        [str(BIN / "jobsvc"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_shell_submit_wait_shows_progress_and_the_final_job(stack: Stack, api_key: str) -> None:
    stack.worker("w", simple=True)
    done = jobsvc(stack, api_key, "submit", "sleep", '{"seconds": 2.5}', "--wait")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "finished"
    assert job["result"] == 2.5
    assert "[" in done.stderr and "%" in done.stderr and "slept" in done.stderr  # the bar
    assert f"job {job['id']} finished" in done.stderr

    failed = jobsvc(stack, api_key, "submit", "fail", '{"message": "boom"}', "--wait")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["message"] == "boom"

    shown = jobsvc(stack, api_key, "status", job["id"])
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["id"] == job["id"]


def test_shell_submit_status_and_cancel(stack: Stack, api_key: str) -> None:
    submitted = jobsvc(stack, api_key, "submit", "echo", '{"value": 5}', "--delay", "60")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "scheduled"

    status = jobsvc(stack, api_key, "status", job["id"])
    assert status.returncode == 0
    assert json.loads(status.stdout)["status"] == "scheduled"

    canceled = jobsvc(stack, api_key, "cancel", job["id"])
    assert canceled.returncode == 0
    assert json.loads(canceled.stdout)["status"] == "canceled"
    assert jobsvc(stack, api_key, "cancel", job["id"]).returncode == 2  # already final: 409


def test_shell_errors_are_one_clear_line(stack: Stack, api_key: str) -> None:
    bad_json = jobsvc(stack, api_key, "submit", "echo", "{not json")
    assert bad_json.returncode == 2
    assert "ARGS_JSON" in bad_json.stderr and "not JSON" in bad_json.stderr

    unknown = jobsvc(stack, api_key, "submit", "nope", "{}")
    assert unknown.returncode == 2
    assert "the API answered 422" in unknown.stderr and "unknown task" in unknown.stderr

    no_key = jobsvc(stack, "", "status", "00000000-0000-0000-0000-000000000000")
    assert no_key.returncode == 2
    assert "401" in no_key.stderr

    env_url = jobsvc(stack, api_key, "status", "x", "--url", "http://127.0.0.1:9")
    assert env_url.returncode == 2
    assert "cannot reach the API" in env_url.stderr


def test_workflows_from_the_client_and_the_shell(stack: Stack, api_key: str, tmp_path: Any) -> None:
    stack.worker("w", simple=True)
    with _client(stack, api_key) as jobs:
        out = jobs.submit_batch(
            [
                {"ref": "first", "task": "echo", "args": {"value": 1}},
                {"ref": "second", "task": "echo", "args": {"value": 2}, "depends_on": ["first"]},
            ],
            on_complete={"task": "echo", "args": {"value": "all done"}},
        )
        first, second = out["refs"]["first"], out["refs"]["second"]
        assert out["jobs"][1]["depends_on"] == [first]
        assert jobs.wait(out["on_complete"]["id"], timeout=20)["result"] == "all done"
        children = {j["id"] for j in jobs.list(parent=first)["items"]}
        assert children == {second, out["on_complete"]["id"]}
        after = jobs.submit("echo", {"value": 3}, depends_on=[second], on_parent_failure="run")
        assert after["status"] == "queued"  # its parent is final already

    workflow = tmp_path / "workflow.json"
    workflow.write_text(
        json.dumps({"jobs": [{"ref": "a", "task": "echo"}, {"task": "echo", "depends_on": ["a"]}]})
    )
    shell = jobsvc(stack, api_key, "batch", str(workflow))
    assert shell.returncode == 0, shell.stderr
    printed = json.loads(shell.stdout)
    a = printed["refs"]["a"]
    assert printed["jobs"][1]["depends_on"] == [a]

    child = jobsvc(stack, api_key, "submit", "echo", "{}", "--after", a, "--wait")
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout)["depends_on"] == [a]

    unique = ("submit", "echo", "{}", "--unique-for", "60", "--delay", "60")  # stays scheduled
    once = [jobsvc(stack, api_key, *unique) for _ in range(2)]
    assert json.loads(once[0].stdout)["id"] == json.loads(once[1].stdout)["id"]

    cycle = tmp_path / "cycle.json"
    cycle.write_text(json.dumps({"jobs": [{"ref": "x", "task": "echo", "depends_on": ["x"]}]}))
    refused = jobsvc(stack, api_key, "batch", str(cycle))
    assert refused.returncode == 2 and "cycle" in refused.stderr


def test_schedules_from_the_client_and_the_shell(stack: Stack, api_key: str) -> None:
    with _client(stack, api_key) as jobs:
        made = jobs.create_schedule(
            "nightly", "0 3 * * *", "generate_report", {"format": "json"}, timezone="Asia/Tokyo"
        )
        assert made["timezone"] == "Asia/Tokyo" and len(made["next_fires"]) == 5
        assert [s["id"] for s in jobs.schedules()] == [made["id"]]
        assert jobs.update_schedule("nightly", paused=True)["paused"] is True  # by name
        assert jobs.schedule(made["id"])["next_fires"] == []
        with pytest.raises(JobsError) as unknown:
            jobs.delete_schedule("weekly")
        assert unknown.value.status_code == 404 and "nightly" in unknown.value.detail

    async def by_name() -> dict[str, Any]:
        async with AsyncJobsClient(str(stack.http.base_url), api_key) as jobs:
            return await jobs.schedule("nightly")

    assert asyncio.run(by_name())["id"] == made["id"]

    listed = jobsvc(stack, api_key, "schedules", "list")
    assert listed.returncode == 0, listed.stderr
    assert (
        f"{made['id']}  nightly  0 3 * * * (Asia/Tokyo)  generate_report  paused" in listed.stdout
    )
    resumed = jobsvc(stack, api_key, "schedules", "resume", made["id"])
    assert json.loads(resumed.stdout)["paused"] is False
    created = jobsvc(
        stack, api_key, "schedules", "create", "weekly", "30 6 * * 1", "echo", '{"value": 1}',
        "--timezone", "Europe/Paris", "--catch-up", "all",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    weekly = json.loads(created.stdout)
    assert weekly["catch_up"] == "all" and weekly["description"] == "At 06:30 on Monday"
    shown = jobsvc(stack, api_key, "schedules", "show", weekly["id"])
    assert json.loads(shown.stdout)["next_fires"][0] == weekly["next_fire_at"]
    assert jobsvc(stack, api_key, "schedules", "delete", weekly["id"]).returncode == 0
    gone = jobsvc(stack, api_key, "schedules", "show", weekly["id"])
    assert gone.returncode == 2 and "404" in gone.stderr
    bad = jobsvc(stack, api_key, "schedules", "create", "x", "0 3 * *", "echo")
    assert bad.returncode == 2 and "has 4 fields" in bad.stderr
