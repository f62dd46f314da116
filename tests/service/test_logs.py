"""Secrets never reach a log line."""

import json
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


def _record(message: str, **extra: object) -> logging.LogRecord:
    return logging.getLogger("jobs.test").makeRecord(
        "jobs.test", logging.INFO, __file__, 1, message, None, None, extra=extra
    )


def test_json_lines_carry_the_running_jobs_fields() -> None:
    with logs.job_fields(job_id="j-1", task="echo", attempt=2, worker="w1"):
        line = json.loads(logs.JsonLines().format(_record("started")))
    assert line["message"] == "started"
    assert line["level"] == "INFO" and line["logger"] == "jobs.test"
    assert (line["job_id"], line["task"], line["attempt"], line["worker"]) == (
        "j-1",
        "echo",
        2,
        "w1",
    )
    outside = json.loads(logs.JsonLines().format(_record("idle")))
    assert "job_id" not in outside


def test_readable_lines_on_a_terminal_name_the_job_too() -> None:
    with logs.job_fields(job_id="j-2", task="sleep"):
        text = logs.Readable().format(_record("half way"))
    assert "INFO jobs.test: half way" in text
    assert text.endswith("[job_id=j-2 task=sleep]")


def test_fields_passed_with_extra_are_kept() -> None:
    line = json.loads(logs.JsonLines().format(_record("enqueued", job_id="j-3")))
    assert line["job_id"] == "j-3"


def test_json_lines_carry_no_terminal_colour_codes(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO", "json")
    coloured = "\x1b[31m\x1b[1mWARNING: red\x1b[0m and \x1b[33mplain\x1b[0m"
    logging.getLogger("werkzeug").warning(coloured)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["message"] == "WARNING: red and plain"
    assert "\\u001b" not in line and "\x1b" not in line
