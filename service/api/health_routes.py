"""Liveness and readiness."""

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service import broker, ledger
from service.api.deps import key_unless
from service.schemas import Health, problems

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    dependencies=[key_unless(lambda settings: settings.public_readyz)],
    responses={
        503: {"description": "PostgreSQL or Redis does not answer", "model": Health},
        **problems({401: "an API key is required here (JOBS_PUBLIC_READYZ=false)"}),
    },
)
async def readyz(request: Request) -> JSONResponse:
    """PostgreSQL and Redis both answer; 503 (with which one failed) otherwise."""
    checks = {
        "database": await _check(_database(request)),
        "redis": await _check(run_in_threadpool(broker.ping, request.app.state.redis)),
    }
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _database(request: Request) -> None:
    async with request.app.state.engine.connect() as conn:
        await ledger.ping(conn)


async def _check(probe: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(probe, _CHECK_TIMEOUT_S)
    except Exception as exc:  # a readiness probe reports every failure, it never raises
        return f"unreachable: {type(exc).__name__}"
    return "ok"
