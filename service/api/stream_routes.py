"""`GET /jobs/{id}/stream`: the job's life as Server-Sent Events.

Every transition is sent from the job's events (so none is skipped, however fast they come),
each progress change as it is seen, and a last `job` event with the final job before the
stream closes. A client that reconnects with `Last-Event-ID` resumes after that event. A
stream whose API key is revoked ends with a `revoked` event (within JOBS_KEY_CACHE_S).
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from service import errors, ledger
from service.api.deps import ClientDep, brief_connection, still_allowed
from service.schemas import EventOut, JobOut, problems
from service.settings import Settings
from service.tables import TERMINAL, Status
from service.watch import Watcher

router = APIRouter(prefix="/jobs", tags=["jobs"])

KEEPALIVE_S = 15.0


@router.get(
    "/{job_id}/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream: events named by status (`queued`, `started`, "
            "...) with the event as data, `progress` with the job's progress, and a last "
            "`job` with the final job",
            "content": {"text/event-stream": {}},
        },
        **problems({401: "no API key, or not a live one", 404: "no such job (or not yours)"}),
    },
)
async def stream(
    job_id: UUID,
    request: Request,
    client: ClientDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
) -> StreamingResponse:
    """Watch a job: every transition and progress update, until it is final."""
    owner = client.owner_filter
    async with brief_connection(request) as conn:
        await ledger.get(conn, job_id, owner)
    return StreamingResponse(
        _events(request, job_id, owner, last_event_id or 0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, job_id: UUID, owner: str | None, after: int
) -> AsyncIterator[str]:
    watcher: Watcher = request.app.state.watcher
    progress: Any = None
    settings: Settings = request.app.state.settings
    recheck_s = min(KEEPALIVE_S, max(settings.key_cache_s, 0.5))
    quiet_s = 0.0
    with watcher.watching(job_id) as changed:
        while True:
            changed.clear()
            if not await still_allowed(request):
                yield _sse("revoked", json.dumps({"detail": "the API key was revoked"}))
                return
            try:
                async with brief_connection(request) as conn:
                    job = await ledger.get(conn, job_id, owner)
                    new = await ledger.events_after(conn, job_id, after)
            except errors.JobNotFound:
                return  # deleted (retention) while watched
            for event in new:
                name = "callback" if event.detail.get("by") == "callback" else event.status
                yield _sse(name, EventOut.model_validate(vars(event)).model_dump_json(), event.id)
                after = event.id
            if job.status == Status.STARTED and job.progress not in (None, progress):
                progress = job.progress
                yield _sse("progress", json.dumps(progress))
            if job.status in TERMINAL:
                yield _sse("job", JobOut.model_validate(vars(job)).model_dump_json())
                return
            try:
                await asyncio.wait_for(changed.wait(), recheck_s)
                quiet_s = 0.0
            except TimeoutError:
                quiet_s += recheck_s
                if quiet_s >= KEEPALIVE_S:
                    quiet_s = 0.0
                    yield ": keepalive\n\n"


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"
