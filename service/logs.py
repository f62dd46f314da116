"""Logging: one JSON line per event (human-readable lines on a terminal), job fields on
every line logged while a job runs, and secrets and terminal colour codes kept out of every
line, whoever logs it."""

import asyncio
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[^\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
    (re.compile(r"(?<!\w)jobsvc_[A-Za-z0-9_-]{8,}"), "jobsvc_***"),  # not in a longer name
    (re.compile(r"(?i)(password['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1***"),
    (re.compile(r"(://[^:/@\s]*:)[^@\s/]+@"), r"\1***@"),  # user:password@host in URLs
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


# Terminal control sequences (colours, bold) that libraries put in their messages: RQ
# colours queue names when stdout is a terminal, werkzeug its warnings.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def plain(text: str) -> str:
    """`text` without terminal colour codes."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def _redacting_factory(base: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        record.msg = plain(redact(record.getMessage()))
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = plain(redact("".join(traceback.format_exception(*record.exc_info))))
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    return factory


FIELDS = ("job_id", "task", "attempt", "worker")
_job: ContextVar[dict[str, Any] | None] = ContextVar("job_log_fields", default=None)


@contextmanager
def job_fields(**fields: Any) -> Iterator[None]:
    """Add these fields (`job_id`, `task`, `attempt`, `worker`) to every line logged inside."""
    token = _job.set({**(_job.get() or {}), **fields})
    try:
        yield
    finally:
        _job.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The job fields of a record: from the running job, or passed with `extra=`."""
    found = dict(_job.get() or {})
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = value
    return found


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class Readable(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        return text + (
            "  [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" if fields else ""
        )


class QuietRQ(logging.Filter):
    """RQ's lines per queue list (one per priority of each queue: 70 for seven queues), at
    start and at each maintenance pass, and its channel bookkeeping, become DEBUG lines: a
    worker's start is its own one "ready" line."""

    _CHATTY = (
        "cleaning registries for queue",
        "subscribing to channel",
        "unsubscribing from channel",
        "*** Listening on",
        "started with PID",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and any(part in str(record.msg) for part in self._CHATTY):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class QuietShutdown(logging.Filter):
    """uvicorn, stopping, cancels requests still open after its grace (long-polls and
    streams, which their clients resume): one INFO line says so, not a traceback each."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError) and "graceful shutdown" in str(exc):
            return False
        if "timeout graceful shutdown exceeded" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_rq() -> None:
    """Install `QuietRQ` on RQ's worker logger (once)."""
    rq_log = logging.getLogger("rq.worker")
    if not any(isinstance(f, QuietRQ) for f in rq_log.filters):
        rq_log.addFilter(QuietRQ())


def setup(level: str, fmt: str = "auto") -> None:
    """The process's log lines: `json`, `text`, or `auto` (text on a terminal, JSON
    otherwise), at `level`; keys, tokens and passwords in URLs are redacted."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if as_json else Readable())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "jobsvc", False)]:
        root.removeHandler(old)
    handler.jobsvc = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietShutdown) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(QuietShutdown())
    current = logging.getLogRecordFactory()
    if not getattr(current, "redacting", False):
        logging.setLogRecordFactory(_redacting_factory(current))
