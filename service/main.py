"""The FastAPI application: factory, lifespan (engine and Redis), routes, OpenAPI.

Serve it with `jobsvc api`, or `uvicorn --factory service.main:create_app`: nothing is
built, configured or connected until the factory runs.
"""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware

from service import broker, db, keys, logs, registry, tracing
from service.api import (
    bulk_routes,
    deps,
    fast_poll,
    file_routes,
    handlers,
    health_routes,
    job_routes,
    limit_routes,
    metrics_routes,
    middleware,
    openapi,
    queue_routes,
    schedule_routes,
    stream_routes,
    swagger,
    task_routes,
)
from service.enqueued import EnqueuedMarks
from service.group_commit import GroupCommit
from service.settings import Settings, get_settings
from service.watch import Watcher

log = logging.getLogger("service")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.engine = db.create_api_engine(settings)
    app.state.redis = broker.connect(settings)
    app.state.marks = EnqueuedMarks(app.state.engine)
    app.state.submits = GroupCommit(app.state.engine, app.state.redis, app.state.marks, settings)
    app.state.watcher = Watcher(settings)
    app.state.streams = stream_routes.StreamSlots(settings.streams_per_client)
    app.state.keys = keys.KeyCache(
        trusted=app.state.watcher.listening.is_set, ttl_s=settings.key_cache_s
    )
    app.state.watcher.on_keys_changed.append(app.state.keys.clear)
    await app.state.watcher.start()
    log.info("api ready: tasks %s", ", ".join(t.name for t in registry.all_tasks()))
    gc.collect()
    gc.freeze()  # what start-up built lives as long as the process: full collections skip it
    try:
        yield
    finally:
        await app.state.marks.close()
        await app.state.watcher.stop()
        await app.state.engine.dispose()
        app.state.redis.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.setup(settings.log_level, settings.log_format)
    tracing.setup("jobsvc-api")
    registry.load(settings.task_modules)
    docs = settings.public_docs
    app = FastAPI(
        title="jobsvc",
        summary="Durable background jobs: a PostgreSQL ledger in front of RQ.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # service.api.swagger serves it, without a CDN
        redoc_url=None,
        openapi_url=None,  # served below: open, or only with a key (JOBS_PUBLIC_DOCS=false)
    )
    app.state.settings = settings
    handlers.install(app)
    openapi.install(app, "/openapi.json")
    if docs:  # a browser cannot send a key: the UI is served only when the document is open
        swagger.install(app, "/openapi.json")
    app.include_router(file_routes.router)  # before jobs: /jobs/uploads is not a job id
    app.include_router(bulk_routes.router)  # before jobs: /jobs/cancel is not a job id
    app.include_router(job_routes.router)
    app.include_router(stream_routes.router)
    app.include_router(task_routes.router)
    app.include_router(schedule_routes.router)
    app.include_router(queue_routes.router)
    app.include_router(limit_routes.router)
    app.include_router(health_routes.router)
    app.include_router(metrics_routes.router)
    app.openapi = lambda: openapi.document(app, settings)  # type: ignore[method-assign]
    _install_middleware(app, settings)
    tracing.instrument_app(app)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: request metrics, the body gate (key before body, sizes, read
    timeout), trusted hosts, CORS, security headers, the lean poll (`fast_poll`)."""
    app.add_middleware(fast_poll.FastPoll)
    app.add_middleware(middleware.SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    if settings.trusted_hosts != ["*"]:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    app.add_middleware(
        middleware.BodyGate,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
        timeout_s=settings.body_timeout_s,
        streamed={file_routes.UPLOADS: settings.max_upload_bytes},
        key_problem=None if settings.dev_mode else deps.key_problem,
    )
    app.add_middleware(middleware.HttpMetrics)
