"""Domain errors and an unreachable ledger, mapped to HTTP in one place."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from service import errors

log = logging.getLogger(__name__)


async def job_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.JobServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def ledger_unreachable(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    ):
        raise exc  # a bug, not an outage: let it be a 500 with a logged traceback
    log.warning("ledger unreachable: %s", exc.__class__.__name__)
    unavailable = errors.LedgerUnavailable()
    return JSONResponse(
        {"detail": unavailable.detail},
        status_code=unavailable.status_code,
        headers={"Retry-After": "5"},
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback here, never sent to the client."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.JobServiceError, job_service_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(DBAPIError, ledger_unreachable)
    # asyncpg raises OSError subclasses (refused, unreachable) and TimeoutError on connect.
    app.add_exception_handler(OSError, ledger_unreachable)
