"""Domain errors and an unreachable ledger, mapped to HTTP: the one place that knows which
status each error is."""

import json
import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service import db, errors

log = logging.getLogger(__name__)

# The most specific class listed for an error decides; anything else is a 400.
STATUS: dict[type[errors.JobServiceError], int] = {
    errors.TaskUnknown: 422,
    errors.QueueUnknown: 422,
    errors.ArgsInvalid: 422,
    errors.OptionInvalid: 422,
    errors.CursorInvalid: 422,
    errors.BatchInvalid: 422,
    errors.ParentsUnknown: 422,
    errors.JobNotFound: 404,
    errors.ScheduleNotFound: 404,
    errors.QueueNotFound: 404,
    errors.LimiterNotFound: 404,
    errors.LimiterDeclared: 409,
    errors.AdminOnly: 403,
    errors.ArtifactMissing: 404,
    errors.JobAlreadyTerminal: 409,
    errors.JobNotRetryable: 409,
    errors.AttemptStillRunning: 409,
    errors.IdempotencyKeyReused: 409,
    errors.SubmittedConcurrently: 409,
    errors.ScheduleNameTaken: 409,
    errors.Unauthenticated: 401,
    errors.BodyTooLarge: 413,
    errors.UploadQuotaExceeded: 413,
    errors.BodyTooSlow: 408,
    errors.TooManyRequests: 429,
    errors.TooManyStreams: 429,
    errors.LedgerUnavailable: 503,
}


class ProblemResponse(JSONResponse):
    """An error's JSON, with every non-ASCII character escaped: an error may quote input
    that UTF-8 cannot encode (a lone surrogate from a JSON `\\ud800` escape)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def status_of(exc: errors.JobServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _headers(exc: errors.JobServiceError) -> dict[str, str]:
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.TooManyRequests):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, errors.LedgerUnavailable):
        return {"Retry-After": "5"}
    return {}


def problem(exc: errors.JobServiceError) -> JSONResponse:
    """The response for a domain error: `{"detail": ...}`, its status and headers."""
    return ProblemResponse(
        {"detail": exc.detail}, status_code=status_of(exc), headers=_headers(exc)
    )


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a request that does not fit its schema, safe for any input."""
    assert isinstance(exc, RequestValidationError)
    return ProblemResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def job_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.JobServiceError)
    return problem(exc)


async def ledger_unreachable(request: Request, exc: Exception) -> JSONResponse:
    if not db.transient(exc):
        raise exc  # a bug, not an outage: let it be a 500 with a logged traceback
    return unreachable(exc)


def unreachable(exc: Exception) -> JSONResponse:
    """The 503 for a transient database error (`db.transient`)."""
    log.warning("ledger unreachable: %s", exc.__class__.__name__)
    return problem(errors.LedgerUnavailable())


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback here, never sent to the client."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ProblemResponse({"detail": "internal server error"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.JobServiceError, job_service_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(DBAPIError, ledger_unreachable)
    app.add_exception_handler(PoolTimeout, ledger_unreachable)
    # asyncpg raises OSError subclasses (refused, unreachable) and TimeoutError on connect,
    # and its own errors on a connection that drops.
    app.add_exception_handler(OSError, ledger_unreachable)
    app.add_exception_handler(asyncpg.PostgresError, ledger_unreachable)
    for outage in db.ASYNCPG_OUTAGES:
        app.add_exception_handler(outage, ledger_unreachable)
