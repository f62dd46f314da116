"""`send_email` against a real SMTP server (aiosmtpd) on loopback."""

from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from service.localservers import free_port
from tests.e2e.conftest import Inbox, Stack
from tests.support import Ledger

pytestmark = pytest.mark.e2e


EMAIL = {
    "to": ["ada@example.com", "grace@example.org"],
    "subject": "Your report is ready",
    "text": "Hello Ada,\nyour report is attached.",
    "html": "<p>Hello <b>Ada</b>, your report is attached.</p>",
    "reply_to": "support@example.com",
}


def test_the_message_arrives_as_sent(
    make_stack: Callable[..., Stack], smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    stack = make_stack(JOBS_SMTP_PORT=str(port), JOBS_SMTP_FROM="jobs@service.example")
    stack.worker("w")

    job = stack.wait(stack.submit("send_email", **EMAIL))

    assert job["status"] == "finished", job
    assert job["result"]["accepted"] == EMAIL["to"] and job["result"]["refused"] == []
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "jobs@service.example"
    assert envelope.rcpt_tos == EMAIL["to"]
    message: EmailMessage = message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[assignment]
    assert message["Subject"] == EMAIL["subject"]
    assert message["To"] == "ada@example.com, grace@example.org"
    assert message["Reply-To"] == "support@example.com"
    assert message["Message-ID"] == job["result"]["message_id"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and text.get_content().replace("\r\n", "\n").strip() == EMAIL["text"]
    assert html is not None and html.get_content().strip() == EMAIL["html"]


def test_an_unreachable_server_is_a_retried_failure(
    make_stack: Callable[..., Stack], ledger_rows: Ledger
) -> None:
    stack = make_stack(JOBS_SMTP_PORT=str(free_port()))  # nothing listens there
    stack.worker("w")
    stack.reconciler()
    r = stack.http.post(
        "/jobs",
        json={"task": "send_email", "args": EMAIL, "max_attempts": 2, "backoff_s": 0.1},
    )

    job = stack.wait(r.json()["id"], timeout=30)

    assert job["status"] == "failed" and job["attempt"] == 2
    assert job["error"]["type"] == "ConnectionRefusedError"
    assert ledger_rows.statuses(job["id"]).count("scheduled") == 1  # the retry


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({**EMAIL, "to": ["not-an-address"]}, "value is not a valid email address"),
        ({**EMAIL, "to": []}, "at least 1 item"),
        ({**EMAIL, "subject": "Hi\r\nBcc: everyone@example.com"}, "String should match pattern"),
        ({"to": ["a@example.com"], "subject": "no body"}, "give text, html, or both"),
    ],
    ids=["bad-address", "no-recipient", "header-injection", "no-body"],
)
def test_bad_email_args_are_422(
    stack: Stack, ledger_rows: Ledger, args: dict[str, Any], message: str
) -> None:
    r = stack.http.post("/jobs", json={"task": "send_email", "args": args})
    assert r.status_code == 422
    assert message in r.text
    assert ledger_rows.count() == 0
