"""`/metrics`: Prometheus text."""

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from service import broker, metrics, registry, sql
from service.api.deps import brief_connection, key_unless
from service.schemas import problems
from service.tables import Status

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
            found = await asyncio.wait_for(_census(conn), _READ_TIMEOUT_S)
            none = dict.fromkeys(registry.queues(), 0)
            current["held"] = {**none, **found["held"]}
            current["parked"] = {**none, **found["parked"]}
            current["tenants"] = found["tenants"]
            current["ledger_rows"] = found["by_status"]
            current["backlog"] = {**dict.fromkeys(registry.queues(), (0, 0.0)), **found["backlog"]}
            paused = await sql.fetch(conn, sql.query("paused_queues"))
            current["paused"] = {q: q in {r["name"] for r in paused} for q in registry.queues()}
    except Exception as exc:  # as above
        log.warning("metrics: ledger counts unavailable (%s)", type(exc).__name__)
    body = await run_in_threadpool(metrics.exposition, current)
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def _census(conn: AsyncConnection) -> dict[str, Any]:
    """`by_status`: jobs by status (every status, 0 where none); `backlog`: by queue the
    jobs waiting for a worker with the seconds the oldest has waited (the queues that have
    any); `held` and `parked`: by queue the jobs held by a concurrency key, and parked by
    fair share; `tenants`: each owner's queued jobs."""
    by_status = {str(status): 0 for status in Status}
    backlog: dict[str, tuple[int, float]] = {}
    held: dict[str, int] = {}
    parked: dict[str, int] = {}
    for row in await sql.fetch(conn, sql.query("census")):
        by_status[row["status"]] += row["n"]
        if row["held"]:
            held[row["queue"]] = held.get(row["queue"], 0) + row["n"]
            continue
        if row["parked"]:
            parked[row["queue"]] = parked.get(row["queue"], 0) + row["n"]
        if row["status"] == Status.QUEUED:
            n, oldest_s = backlog.get(row["queue"], (0, 0.0))
            backlog[row["queue"]] = (n + row["n"], max(oldest_s, row["oldest_s"]))
    tenants = {r["owner"]: r["n"] for r in await sql.fetch(conn, sql.query("tenant_backlog"))}
    return {
        "by_status": by_status,
        "backlog": backlog,
        "held": held,
        "parked": parked,
        "tenants": tenants,
    }
