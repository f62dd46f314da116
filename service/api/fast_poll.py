"""`GET /jobs/{id}` without the framework: the hottest request (every client polls it).

A plain ASGI handler sits inside the middleware stack (request metrics, body gate, trusted
hosts, CORS and security headers all still apply) and in front of FastAPI's router. It
answers the common case itself — a canonical job id, no query string, a key this process
has cached — with the same statement, the same owner filter, the same `JobOut` bytes and
the same ETag as the documented route in `job_routes`, skipping routing and dependency
solving (about half of a poll's CPU under FastAPI; docs/performance.md). Anything else
(a long-poll's `wait`, an unknown or missing key, an odd id) goes on to that route, which
stays the one OpenAPI documents and the one that answers every error but these two: 404
for a job the key may not see, 503 for an unreachable ledger.
"""

import re
from typing import Any
from uuid import UUID

from starlette.types import ASGIApp, Receive, Scope, Send

from service import db, errors, ledger
from service.api import handlers, job_routes
from service.api.deps import DEV_CLIENT, bearer_key
from service.keys import Client, KeyCache
from service.schemas import JobOut
from service.settings import Settings

_JOB_PATH = re.compile(r"/jobs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_MAX_TAGS_LENGTH = 200  # the route's If-None-Match limit: longer is its 422


class FastPoll:
    """Answers `GET /jobs/{id}` for a cached key; passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # the documented route, left in the scope for the request metrics (labelled by
        # route template, as the router would)
        self.route = next(
            r for r in job_routes.router.routes if getattr(r, "path", "") == "/jobs/{job_id}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            match = _JOB_PATH.fullmatch(scope["path"])
            if match is not None and await self._answer(scope, send, UUID(match[1])):
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, job_id: UUID) -> bool:
        """Answer the poll; False (nothing sent) if the full route must."""
        state = scope["app"].state
        authorization = tags = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"if-none-match":
                tags = value
        client = _cached_client(state.settings, state.keys, authorization)
        if client is None or (tags is not None and len(tags) > _MAX_TAGS_LENGTH):
            return False
        scope["route"] = self.route
        try:
            async with state.engine.connect() as conn:
                job = await ledger.get(conn, job_id, client.owner_filter)
        except errors.JobNotFound as exc:
            await handlers.problem(exc)(scope, _nothing, send)
            return True
        except Exception as exc:
            if not db.transient(exc):
                raise
            await handlers.unreachable(exc)(scope, _nothing, send)
            return True
        tag = job_routes.etag(job)
        if tags is not None and tag in (t.strip() for t in tags.decode("latin-1").split(",")):
            await _send(send, 304, b"", tag, None)
        else:
            body = JobOut.model_validate(vars(job)).model_dump_json().encode()
            await _send(send, 200, body, tag, b"application/json")
        return True


def _cached_client(
    settings: Settings, cache: KeyCache, authorization: bytes | None
) -> Client | None:
    if settings.dev_mode:
        return DEV_CLIENT
    key = None if authorization is None else bearer_key(authorization.decode("latin-1"))
    return None if key is None else cache.get(key)


async def _send(send: Send, status: int, body: bytes, tag: str, media: bytes | None) -> None:
    headers = [(b"etag", tag.encode())]
    if media is not None:  # a 304 has neither a body nor its length
        headers += [(b"content-length", str(len(body)).encode()), (b"content-type", media)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _nothing() -> Any:  # the problem responses read no request body
    return {"type": "http.disconnect"}
