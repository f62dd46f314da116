"""Logging set-up that keeps secrets out of every line, whoever logs it."""

import logging
import re
import traceback
from typing import Any

_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[^\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
    (re.compile(r"jobsvc_[A-Za-z0-9_-]{8,}"), "jobsvc_***"),
    (re.compile(r"(?i)(password['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s/]+@"), r"\1***@"),  # user:password@host in URLs
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redacting_factory(base: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    return factory


def setup(level: str) -> None:
    """One format for the process, and redaction of keys, tokens and passwords in URLs."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    current = logging.getLogRecordFactory()
    if not getattr(current, "redacting", False):
        logging.setLogRecordFactory(_redacting_factory(current))
