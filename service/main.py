"""The FastAPI application: factory, lifespan (engine and Redis), routes, OpenAPI."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.openapi.utils import get_openapi

from jobs import registry
from service import broker, db, logs
from service.api import handlers, health, jobs, middleware, tasks
from service.settings import Settings, get_settings

log = logging.getLogger("service")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.engine = db.create_api_engine(settings)
    app.state.redis = broker.connect(settings)
    log.info("api ready: tasks %s", ", ".join(t.name for t in registry.all_tasks()))
    try:
        yield
    finally:
        await app.state.engine.dispose()
        app.state.redis.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.setup(settings.log_level)
    registry.load(settings.task_modules)
    docs = settings.public_docs
    app = FastAPI(
        title="jobsvc",
        summary="Durable background jobs: a PostgreSQL ledger in front of RQ.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.dependency_overrides[get_settings] = lambda: settings
    handlers.install(app)
    app.include_router(jobs.router)
    app.include_router(tasks.router)
    app.include_router(health.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _install_middleware(app, settings)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: size limits, trusted hosts, CORS, security headers."""
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
        middleware.SizeLimits,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, plus each task's args model so /docs shows what `args` takes."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    refs = []
    examples = {}
    for task in registry.all_tasks():
        name = f"{_camel(task.name)}Args"
        args_schema = task.args_model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(args_schema.pop("$defs", {}))
        components[name] = {**args_schema, "title": name, "description": task.description}
        refs.append({"$ref": f"#/components/schemas/{name}"})
        example = (args_schema.get("examples") or [{}])[0]
        examples[task.name] = {
            "summary": task.description,
            "value": {"task": task.name, "args": example},
        }
    components["JobIn"]["properties"]["args"] = {
        "title": "Args",
        "description": "the task's args: the *Args schema of the task named by `task`",
        "anyOf": refs,
        "default": {},
    }
    body = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    body["examples"] = examples
    app.openapi_schema = schema
    return schema


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


app = create_app()
