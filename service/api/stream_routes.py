"""`GET /jobs/{id}/stream`: the job's life as Server-Sent Events.

Every transition is sent from the job's events (so none is skipped, however fast they come),
each progress change as it is seen, and a last `job` event with the final job before the
stream closes. A client that reconnects with `Last-Event-ID` resumes after that event. A
stream whose API key is revoked ends with a `revoked` event (within JOBS_KEY_CACHE_S).

Streams are bounded: a client holds at most JOBS_STREAMS_PER_CLIENT open on one API
process (429 past it), and a stream ends after JOBS_STREAM_MAX_S with a `reconnect` event
(EventSource reconnects by itself, sending `Last-Event-ID`).
"""

import asyncio
import json
import time
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
        **problems(
            {
                401: "no API key, or not a live one",
                404: "no such job (or not yours)",
                429: "JOBS_STREAMS_PER_CLIENT streams of yours are open already",
            }
        ),
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
    slots: StreamSlots = request.app.state.streams
    slot = slots.take(client.name)
    return StreamingResponse(
        _events(request, job_id, owner, last_event_id or 0, slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, job_id: UUID, owner: str | None, after: int, slot: "Slot"
) -> AsyncIterator[str]:
    watcher: Watcher = request.app.state.watcher
    progress: Any = None
    settings: Settings = request.app.state.settings
    recheck_s = min(KEEPALIVE_S, max(settings.key_cache_s, 0.5))
    quiet_s = 0.0
    ends = time.monotonic() + settings.stream_max_s
    with slot, watcher.watching(job_id) as changed:
        while True:
            changed.clear()
            if not await still_allowed(request):
                yield _sse("revoked", json.dumps({"detail": "the API key was revoked"}))
                return
            try:
                async with brief_connection(request) as conn:
                    job, new = await ledger.watched(conn, job_id, owner, after)
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
            if time.monotonic() >= ends:
                detail = {"detail": "this stream has run its time: reconnect with Last-Event-ID"}
                yield _sse("reconnect", json.dumps(detail), after or None)
                return
            try:
                await asyncio.wait_for(changed.wait(), min(recheck_s, ends - time.monotonic()))
                quiet_s = 0.0
            except TimeoutError:
                quiet_s += recheck_s
                if quiet_s >= KEEPALIVE_S:
                    quiet_s = 0.0
                    yield ": keepalive\n\n"


class Slot:
    """One open stream of a client; given back once, when the stream ends or is dropped
    unstarted."""

    def __init__(self, slots: "StreamSlots", client: str) -> None:
        self._slots: StreamSlots | None = slots
        self._client = client

    def release(self) -> None:
        if self._slots is not None:
            self._slots.give_back(self._client)
            self._slots = None

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a response dropped before its stream began
        self.release()


class StreamSlots:
    """How many streams each client holds open in this process."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, int] = {}

    def take(self, client: str) -> Slot:
        if self._open.get(client, 0) >= self.per_client:
            raise errors.TooManyStreams(self.per_client)
        self._open[client] = self._open.get(client, 0) + 1
        return Slot(self, client)

    def give_back(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"
