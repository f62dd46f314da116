"""`/metrics`: Prometheus text."""

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from service import broker, ledger, metrics, registry, sql
from service.api.deps import brief_connection, key_unless
from service.schemas import problems

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

_READ_TIMEOUT_S = 3.0


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[key_unless(lambda settings: settings.public_metrics)],
    responses={
        200: {"description": "Prometheus text format", "content": {"text/plain": {}}},
        **problems({401: "an API key is required here (JOBS_PUBLIC_METRICS=false)"}),
    },
)
async def scrape(request: Request) -> Response:
    """Counters and histograms of the API, workers and reconciler; queue depth, ledger rows
    by status, each queue's backlog and whether it is paused, as of now (left out while
    Redis or PostgreSQL does not answer)."""
    current: dict[str, Any] = {}
    try:
        current["queue_depth"] = await asyncio.wait_for(
            run_in_threadpool(broker.queue_depths, request.app.state.redis, registry.queues()),
            _READ_TIMEOUT_S,
        )
    except Exception as exc:  # a scrape reports what it can
        log.warning("metrics: queue depth unavailable (%s)", type(exc).__name__)
    try:
        async with brief_connection(request) as conn:
            by_status, backlog, held = await asyncio.wait_for(ledger.census(conn), _READ_TIMEOUT_S)
            current["held"] = {**dict.fromkeys(registry.queues(), 0), **held}
            current["ledger_rows"] = by_status
            current["backlog"] = {**dict.fromkeys(registry.queues(), (0, 0.0)), **backlog}
            paused = await sql.fetch(conn, sql.query("paused_queues"))
            current["paused"] = {q: q in {r["name"] for r in paused} for q in registry.queues()}
    except Exception as exc:  # as above
        log.warning("metrics: ledger counts unavailable (%s)", type(exc).__name__)
    body = await run_in_threadpool(metrics.exposition, current)
    return Response(body, media_type=metrics.CONTENT_TYPE)
