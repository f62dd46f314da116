"""Request dependencies shared by the routes: settings, Redis, and the calling client."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from service import errors, keys, ratelimit
from service.keys import Client
from service.settings import Settings


async def app_settings(request: Request) -> Settings:
    """The settings the app was made with (tests make apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(app_settings)]


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for one request; what the route did not commit is rolled back."""
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(get_connection)]

DEV_CLIENT = Client("dev", admin=True)
MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>'"
INVALID_KEY = "invalid or revoked API key"

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="API key",
    description="a key from `jobsvc keys create NAME`",
)


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(get_redis)]


CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def brief_connection(request: Request) -> AsyncConnection:
    """A pooled connection for a few statements, not for the whole request: routes that
    wait (long-polls, streams) hold none while they wait. Use as `async with`."""
    engine: AsyncEngine = request.app.state.engine
    return engine.connect()


async def current_client(
    request: Request, settings: SettingsDep, credentials: CredentialsDep
) -> Client:
    """The client an `Authorization: Bearer <key>` header names; 401 without a live key.

    Known keys come from the process's `KeyCache`; others are looked up on a connection
    given back at once (routes that wait hold none)."""
    if settings.dev_mode:
        return DEV_CLIENT
    known: Client | None = getattr(request.state, "client", None)  # the body gate's
    if known is not None:
        return known
    if credentials is None:
        raise errors.Unauthenticated(MISSING_KEY)
    client = await authenticated(request, credentials.credentials)
    if client is None:
        raise errors.Unauthenticated(INVALID_KEY)
    return client


async def still_allowed(request: Request) -> bool:
    """Whether the key of this (long) request is still live: streams and long-polls ask as
    they go, so a revoked key's open requests end too."""
    settings: Settings = request.app.state.settings
    return settings.dev_mode or await key_problem(request.scope) is None


async def key_problem(scope: Scope) -> str | None:
    """Why a request gets a 401 (its detail), from its headers alone; None if its key is
    live. The body gate asks before it reads a body, and leaves the client it found for
    the route (`current_client`)."""
    request = Request(scope)
    key = bearer_key(request.headers.get("authorization", ""))
    if key is None:
        return MISSING_KEY
    client = await authenticated(request, key)
    if client is None:
        return INVALID_KEY
    request.state.client = client
    return None


def bearer_key(authorization: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header's value; None for anything else."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


async def authenticated(request: Request, key: str) -> Client | None:
    """The client of a live key, from the process's key cache or the ledger; None if the
    key is unknown or revoked (also asked again by streams and long-polls as they go)."""
    cache: keys.KeyCache = request.app.state.keys
    client = cache.get(key)
    if client is None:
        generation = cache.generation
        async with brief_connection(request) as conn:
            client = await keys.authenticate(conn, key)
        if client is not None:
            cache.put(key, client, generation)
    return client


ClientDep = Annotated[Client, Depends(current_client)]


def key_unless(public: Callable[[Settings], bool]) -> Any:
    """A route dependency: open while `public(settings)`, else an API key is required."""

    async def access(request: Request, settings: SettingsDep) -> None:
        if not public(settings):
            await current_client(request, settings, await bearer_scheme(request))

    return Depends(access)


async def within_rate(client: ClientDep, redis: RedisDep, settings: SettingsDep) -> Client:
    """The client, if its rate allows one more request that costs work (a submit, cancel,
    retry or upload): 429 with Retry-After if not."""
    if settings.rate_limit_on:
        await run_in_threadpool(ratelimit.take, redis, client.name, settings)
    return client


LimitedClientDep = Annotated[Client, Depends(within_rate)]


async def admin_client(client: ClientDep) -> Client:
    """The client, if it holds an admin key: 403 if not."""
    if not client.admin:
        raise errors.AdminOnly()
    return client


AdminDep = Annotated[Client, Depends(admin_client)]
