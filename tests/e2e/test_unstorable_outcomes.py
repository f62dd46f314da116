"""No job can take a worker down: errors and results the ledger cannot store as they are
end the job with a storable error, and the same worker process runs the next job."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import TEST_TASKS, Stack
from tests.support import QuietHandler, loopback_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """Answers every POST with 400 and a body holding a NUL byte."""

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"refused\x00here \xed\xa0\x80"  # NUL, then a UTF-8-encoded lone surrogate
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with loopback_server(Handler) as url:
        yield url


@pytest.mark.parametrize("simple", [False, True], ids=["forking", "simple"])
def test_unstorable_errors_fail_the_job_not_the_worker(
    make_stack: Any, refusing_server: str, simple: bool
) -> None:
    stack: Stack = make_stack(**TEST_TASKS, JOBS_WEBHOOK_ALLOW_PRIVATE="true")
    worker = stack.worker("w", simple=simple)

    hook = stack.http.post(
        "/jobs",
        json={"task": "call_webhook", "args": {"url": refusing_server}, "max_attempts": 2},
    ).json()["id"]
    failed = stack.wait(hook)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "WebhookRefused"
    assert "answered 400: refused" in failed["error"]["message"]
    assert "\x00" not in failed["error"]["message"]

    raised = stack.submit("raise_unstorable")
    failed = stack.wait(raised)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "RuntimeError"
    message = failed["error"]["message"]
    assert message.startswith("before\ufffdafter ")
    assert "\x00" not in message and len(message) <= 2_000
    assert "RuntimeError" in failed["error"]["traceback"]

    after = stack.submit("echo", value="still here")
    done = stack.wait(after)
    assert (done["status"], done["result"]) == ("finished", "still here")
    assert worker.poll() is None, stack.log("w")  # the same process, alive
    runs = stack.http.get(f"/jobs/{after}/events").json()
    assert [e["worker"] for e in runs if e["status"] == "started"] == ["w"]
