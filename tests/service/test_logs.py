"""Secrets never reach a log line."""

import logging

import pytest

from service import logs


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer jobsvc_AbCdEf0123456789xyz", "jobsvc_AbCdEf0123456789xyz"),
        ("headers={'authorization': 'Bearer tok-123'}", "tok-123"),
        ("connecting to postgresql+asyncpg://app:hunter2@db:5432/jobs", "hunter2"),
        ("redis://:r3dis-pw@cache:6379/0 refused", "r3dis-pw"),
        ("smtp password=mail-pw-9 rejected", "mail-pw-9"),
        ("key jobsvc_ZZZZZZZZZZZZZZZZ leaked", "jobsvc_ZZZZZZZZZZZZZZZZ"),
    ],
)
def test_redact(line: str, secret: str) -> None:
    assert secret not in logs.redact(line)
    assert "***" in logs.redact(line)


def test_records_are_redacted_whoever_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    logs.setup("INFO")
    caplog.set_level(logging.INFO)
    try:
        raise ConnectionError("cannot reach redis://:s3cr3t@cache:6379/0")
    except ConnectionError:
        logging.getLogger("some.library").exception(
            "failed with %s", "Bearer jobsvc_SECRETSECRETSECRET"
        )

    assert "s3cr3t" not in caplog.text
    assert "SECRETSECRETSECRET" not in caplog.text
    assert "failed with Bearer ***" in caplog.text
    assert "redis://:***@cache:6379/0" in caplog.text
