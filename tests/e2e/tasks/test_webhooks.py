"""`call_webhook` against a real HTTP server on loopback, and its SSRF guard."""

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.outbound import WebhookRefused, post, public_address
from tests.e2e.conftest import Stack
from tests.support import Ledger, QuietHandler, loopback_server

pytestmark = pytest.mark.e2e


class Receiver:
    """Answers with the statuses queued in `replies` (then 200), recording each request."""

    def __init__(self) -> None:
        self.replies: list[int] = []
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "json": json.loads(body)})
                status = receiver.replies.pop(0) if receiver.replies else 200
                reply = json.dumps({"ok": status < 400, "pad": "p" * 10_000}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/job"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def call(stack: Stack, url: str, **extra: object) -> dict[str, Any]:
    body = {
        "task": "call_webhook",
        "args": {"url": url, "payload": {"order": 17}, "headers": {"X-Signature": "abc"}},
        "backoff_s": 0.1,
        **extra,
    }
    r = stack.http.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    return stack.wait(r.json()["id"], timeout=30)


@pytest.fixture
def allowed(make_stack: Callable[..., Stack]) -> Stack:
    # The receivers are on loopback: dev mode's switch, the narrowest that reaches them.
    stack = make_stack(JOBS_WEBHOOK_ALLOW_LOOPBACK="1", JOBS_WEBHOOK_RESPONSE_BYTES="100")
    stack.worker("w")
    stack.reconciler()
    return stack


def test_posts_json_and_keeps_status_and_a_bounded_body(allowed: Stack, receiver: Receiver) -> None:
    job = call(allowed, receiver.url)

    assert job["status"] == "finished", job
    assert job["result"]["status_code"] == 200
    assert len(job["result"]["body"]) == 100  # JOBS_WEBHOOK_RESPONSE_BYTES
    [request] = receiver.requests
    assert request["json"] == {"order": 17}
    assert request["headers"]["X-Signature"] == "abc"
    assert request["headers"]["Host"] == f"127.0.0.1:{receiver.server.server_port}"


def test_5xx_is_retried(allowed: Stack, receiver: Receiver, ledger_rows: Ledger) -> None:
    receiver.replies = [503]

    job = call(allowed, receiver.url, max_attempts=3)

    assert job["status"] == "finished" and job["attempt"] == 2
    assert len(receiver.requests) == 2
    assert ledger_rows.events(job["id"])[2]["detail"]["error"]["type"] == "RetryableStatus"


def test_4xx_is_not_retried(allowed: Stack, receiver: Receiver) -> None:
    receiver.replies = [404]

    job = call(allowed, receiver.url, max_attempts=3)

    assert job["status"] == "failed" and job["attempt"] == 1
    assert job["error"]["type"] == "WebhookRefused"
    assert "answered 404" in job["error"]["message"]
    assert len(receiver.requests) == 1


def test_network_errors_are_retried(allowed: Stack, receiver: Receiver) -> None:
    closed = receiver.url.replace(str(receiver.server.server_port), "1")

    job = call(allowed, closed, max_attempts=2)

    assert job["status"] == "failed" and job["attempt"] == 2
    assert job["error"]["type"] == "ConnectError"


def test_loopback_is_refused_by_default(stack: Stack, receiver: Receiver) -> None:
    stack.worker("w")

    job = call(stack, receiver.url, max_attempts=3)

    assert job["status"] == "failed" and job["attempt"] == 1
    assert "resolves to 127.0.0.1, which is not a public address" in job["error"]["message"]
    assert receiver.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::5db8:d822]/",  # NAT64 of a public address: still another network's
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[::127.0.0.1]/",  # IPv4-compatible
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped metadata service
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_the_guard_refuses_non_public_addresses(url: str) -> None:
    with pytest.raises(WebhookRefused, match="not a public address"):
        public_address(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:9/", "127.0.0.1"),
        ("http://127.8.9.10/", "127.8.9.10"),
        ("http://[::1]/", "::1"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
    ],
)
def test_the_loopback_switch_lets_loopback_through(url: str, address: str) -> None:
    assert public_address(url, allow_private=False, allow_loopback=True) == address


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1: another host's loopback
    ],
)
def test_the_loopback_switch_refuses_every_other_non_public_address(url: str) -> None:
    with pytest.raises(WebhookRefused, match="not a public address"):
        public_address(url, allow_private=False, allow_loopback=True)


def test_the_guard_lets_public_addresses_through() -> None:
    assert public_address("https://93.184.216.34/hook", allow_private=False) == "93.184.216.34"
    assert public_address("http://127.0.0.1:9/", allow_private=True) == "127.0.0.1"
    with pytest.raises(WebhookRefused, match="not an http"):
        public_address("ftp://example.com/", allow_private=True)


@pytest.fixture
def endless() -> Iterator[tuple[str, list[int]]]:
    """Answers 200 with a body that goes on for up to 2 GB; records how much it sent."""
    sent: list[int] = [0]

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(2**31))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(2**31 // len(chunk)):
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass  # the reader hung up

    with loopback_server(Handler) as url:
        yield url, sent


def test_an_endless_answer_is_read_only_as_far_as_it_is_kept(
    allowed: Stack, endless: tuple[str, list[int]]
) -> None:
    url, sent = endless
    job = call(allowed, url)

    assert job["status"] == "finished", job
    assert job["result"] == {"status_code": 200, "body": "x" * 100}
    assert sent[0] < 64 * 2**20  # the worker hung up long before the 2 GB were sent


def test_redirects_are_not_followed(allowed: Stack, receiver: Receiver) -> None:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)  # 307 keeps the method and body: the riskiest kind
            self.send_header("Location", receiver.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with loopback_server(Handler, "/moved") as moved:
        job = call(allowed, moved)

    assert job["status"] == "finished", job
    assert job["result"]["status_code"] == 307
    assert receiver.requests == []  # the Location was never visited


def test_the_request_goes_to_the_address_that_was_checked(receiver: Receiver) -> None:
    """The URL's host name is never looked up again after the guard checked it: a name
    that resolves nowhere still reaches the checked address, and is sent as Host."""
    port = receiver.server.server_port

    answer = post(f"http://hooks.example.invalid:{port}/job", "127.0.0.1", b"{}", {}, 5, keep=10)

    assert answer.status_code == 200 and len(answer.body) == 10
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"hooks.example.invalid:{port}"
