"""ASGI middleware, all of it: request metrics, the body gate and security headers.

Pure ASGI (no BaseHTTPMiddleware), so a refused request costs little and streaming
responses pass through untouched.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors, metrics

_BODY_METHODS = {"POST", "PUT", "PATCH"}


async def _refuse(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGate:
    """What every request must pass before a route sees its body:

    - 431 for headers over `max_header_bytes`;
    - 401 for a request with a body and no live API key (`key_problem` says why; None: no
      keys, as in JOBS_DEV_MODE), from the headers alone, before a byte of the body is read;
    - 413 for a body over its limit — `max_body_bytes`, or `streamed[path]` — whatever
      Content-Length claims;
    - 408 for a body not received within `timeout_s` of the request's start, so a client
      trickling a body pins nothing for long.

    A body within the limit is read once and replayed to the route, as JSON (`_as_json`).
    On `streamed` paths (uploads) the body is passed on as it arrives, counted and timed:
    the route writes it to disk, and the limits surface there as BodyTooLarge or
    BodyTooSlow.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_header_bytes: int,
        timeout_s: float,
        streamed: dict[str, int],
        key_problem: Callable[[Scope], Awaitable[str | None]] | None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.timeout_s = timeout_s
        self.streamed = streamed
        self.key_problem = key_problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(k) + len(v) for k, v in scope["headers"])
        if header_bytes > self.max_header_bytes:
            await _refuse(
                send, 431, f"request headers too large: over {self.max_header_bytes} bytes"
            )
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        problem = await self._key_problem(scope)
        if problem is not None:
            await _refuse(send, 401, problem, _BEARER)
            return
        limit = self.streamed.get(scope["path"], self.max_body_bytes)
        if _declared_length(scope) > limit:
            await _refuse(send, 413, str(errors.BodyTooLarge(limit)))
            return
        body = _Body(receive, limit, time.monotonic() + self.timeout_s, self.timeout_s)
        if scope["path"] in self.streamed:
            await self.app(scope, body.receive, send)
            return
        try:
            data = await body.read()
        except errors.BodyTooLarge as exc:
            await _refuse(send, 413, str(exc))
            return
        except errors.BodyTooSlow as exc:
            await _refuse(send, 408, str(exc))
            return
        if data:
            json_scope = _as_json(scope)
            if isinstance(json_scope, str):
                await _refuse(send, 415, json_scope)
                return
            scope = json_scope
        await self.app(scope, _replay(data, receive), send)

    async def _key_problem(self, scope: Scope) -> str | None:
        if self.key_problem is None:
            return None
        try:
            return await self.key_problem(scope)
        except Exception:  # the ledger unreachable, say: the route answers it properly
            return None


_BEARER = [(b"www-authenticate", b"Bearer")]


_JSON = b"application/json"
_FORM = b"application/x-www-form-urlencoded"


def _as_json(scope: Scope) -> Scope | str:
    """The request with its body to be read as JSON, or why it cannot be.

    Every body but an upload is JSON. Sent with no Content-Type, or with curl's default
    for `-d` (form-urlencoded), it is read as JSON: the header is the one thing such a
    request lacks. Not from a browser, though (a request with `Origin`): a page may send
    form-urlencoded to any origin without asking first, and JSON only after a CORS
    preflight, so a browser's body must say it is JSON.
    """
    given = dict(scope["headers"]).get(b"content-type", b"")
    kind = given.split(b";")[0].strip().lower()
    if kind == _JSON or kind.endswith(b"+json"):
        return scope
    browser = any(name == b"origin" for name, _ in scope["headers"])
    if kind in (b"", _FORM) and not browser:
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        return {**scope, "headers": [*headers, (b"content-type", _JSON)]}
    shown = given.decode("latin-1")[:100] or "none"
    return (
        f"the body must be JSON, sent with the header Content-Type: application/json"
        f" (this request's Content-Type: {shown})"
    )


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


class _Body:
    """A request body's messages, counted against `limit` and timed against `deadline`."""

    def __init__(self, receive: Receive, limit: int, deadline: float, timeout_s: float) -> None:
        self._receive = receive
        self.limit = limit
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.size = 0

    async def receive(self) -> Message:
        try:
            async with asyncio.timeout(self.deadline - time.monotonic()):
                message = await self._receive()
        except TimeoutError:
            raise errors.BodyTooSlow(self.timeout_s) from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                raise errors.BodyTooLarge(self.limit)
        return message

    async def read(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then whatever comes next (a disconnect)

    return replay


class SecurityHeaders:
    """Headers that keep browsers from sniffing, framing or caching job data."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    )
    CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
    # /docs: Swagger UI's files from this origin, and its inline start-up script
    DOCS_CSP = (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
        b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] == "/docs" or scope["path"].startswith("/docs/")
        extra = [*self.HEADERS, self.DOCS_CSP if docs else self.CSP]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HttpMetrics:
    """Counts each request by method, route template and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, template, str(status)).inc()
            metrics.HTTP_SECONDS.labels(method, template).observe(time.perf_counter() - started)
