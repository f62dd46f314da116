"""Completion callbacks with real processes: a loopback receiver gets the final job, signed,
at least once; the verification code the docs show accepts it and refuses tampering."""

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FAST, Stack, wait_until

pytestmark = pytest.mark.e2e

SECRET = "callback-secret-for-tests"
WATCHING = Path(__file__).resolve().parents[2] / "docs" / "watching.md"


def documented_verify() -> Callable[..., bool]:
    """The `verify` function exactly as docs/watching.md's "Completion callbacks" shows it."""
    section = WATCHING.read_text().split("## Completion callbacks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/watching.md", "exec"), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


class Receiver:
    """A loopback HTTP server that records each POST and answers with the next status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[[list[int]], Receiver]]:
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def callback_stack(make_stack: Any, **env: str) -> Stack:
    settings = {
        "JOBS_CALLBACK_SECRET": SECRET,
        "JOBS_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
        "JOBS_CALLBACK_BACKOFF_S": "0.2",
        **FAST,
    }
    stack: Stack = make_stack(**{**settings, **env})
    stack.worker("w", simple=True)
    stack.reconciler()
    return stack


def submit_with_callback(stack: Stack, url: str, **job: Any) -> str:
    body = {"task": "echo", "args": {"value": "done"}, "callback_url": url, **job}
    r = stack.http.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["callback_url"] == url
    job_id: str = r.json()["id"]
    return job_id


def test_the_final_job_is_posted_signed_and_verifies(make_stack: Any, receiver: Any) -> None:
    hook = receiver([200])
    stack = callback_stack(make_stack)
    job_id = submit_with_callback(stack, hook.url)

    wait_until(lambda: len(hook.received) >= 1, 20, "the callback")
    headers, body = hook.received[0]
    assert json.loads(body) == stack.job(job_id)  # the job as GET /jobs/{id} shows it
    assert json.loads(body)["status"] == "finished"
    assert headers["Content-Type"] == "application/json"

    verify = documented_verify()
    signature = headers["X-Jobs-Signature"]
    assert verify(SECRET.encode(), signature, body)
    assert not verify(SECRET.encode(), signature, body.replace(b'"done"', b'"fake"'))
    assert not verify(b"another secret", signature, body)
    t, digest = (part.split("=", 1)[1] for part in signature.split(","))
    assert not verify(SECRET.encode(), f"t={int(t) - 1},v1={digest}", body)  # time altered
    assert not verify(SECRET.encode(), signature, body, tolerance_s=-1)  # too old

    wait_until(lambda: _deliveries(stack, job_id), 10, "the delivery event")
    [delivery] = _deliveries(stack, job_id)
    assert delivery["detail"]["delivered"] is True
    assert delivery["detail"]["status_code"] == 200
    time.sleep(1.5)  # a few more reconciler passes: still one delivery
    assert len(hook.received) == 1


def _deliveries(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    events = stack.http.get(f"/jobs/{job_id}/events").json()
    return [e for e in events if e["detail"].get("by") == "callback"]


def test_refused_deliveries_are_retried_until_taken(make_stack: Any, receiver: Any) -> None:
    hook = receiver([500, 503, 200])
    stack = callback_stack(make_stack)
    job_id = submit_with_callback(stack, hook.url, task="fail", args={"message": "no"})

    wait_until(lambda: len(_deliveries(stack, job_id)) >= 3, 30, "three tries")
    tries = _deliveries(stack, job_id)
    assert [t["detail"]["status_code"] for t in tries] == [500, 503, 200]
    assert [t["detail"]["delivered"] for t in tries] == [False, False, True]
    assert all(json.loads(body)["status"] == "failed" for _, body in hook.received)
    assert len({headers["X-Jobs-Delivery"] for headers, _ in hook.received}) == 1


def test_a_retried_job_calls_back_again(make_stack: Any, receiver: Any) -> None:
    hook = receiver([200])
    stack = callback_stack(make_stack)
    job_id = submit_with_callback(stack, hook.url, task="fail", args={"message": "no"})
    wait_until(lambda: len(hook.received) == 1, 20, "the first callback")

    assert stack.http.post(f"/jobs/{job_id}/retry").status_code == 202
    wait_until(lambda: len(hook.received) == 2, 20, "the second callback")
    first, second = (json.loads(body) for _, body in hook.received)
    assert (first["attempt"], second["attempt"]) == (1, 2)


def test_private_addresses_are_refused_without_the_opt_in(make_stack: Any, receiver: Any) -> None:
    hook = receiver([200])
    stack = callback_stack(make_stack, JOBS_WEBHOOK_ALLOW_PRIVATE="false")
    job_id = submit_with_callback(stack, hook.url)

    wait_until(lambda: _deliveries(stack, job_id), 20, "the refused delivery")
    [refused] = _deliveries(stack, job_id)
    assert refused["detail"]["delivered"] is False
    assert "not a public address" in refused["detail"]["error"]
    assert hook.received == []


def test_callback_url_needs_a_secret_on_the_server(stack: Stack) -> None:
    r = stack.http.post("/jobs", json={"task": "echo", "callback_url": "https://example.com/hook"})
    assert r.status_code == 422
    assert "JOBS_CALLBACK_SECRET" in r.text


def test_callback_url_must_be_http(make_stack: Any) -> None:
    stack = make_stack(JOBS_CALLBACK_SECRET="s" * 32)  # so only the scheme can be wrong
    r = stack.http.post("/jobs", json={"task": "echo", "callback_url": "ftp://example.com/x"})
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["loc"][-1] == "callback_url"
    assert "scheme should be 'http' or 'https'" in problem["msg"]


def test_deliver_callback_cannot_be_submitted_by_clients(stack: Stack) -> None:
    r = stack.http.post("/jobs", json={"task": "deliver_callback", "args": {}})
    assert r.status_code == 422
    assert "unknown task" in r.text
    assert "deliver_callback" not in stack.http.get("/tasks").text
