"""The service's app plus the baselines the benchmarks compare it with, in the same process:
a hello-world endpoint, an endpoint that only enqueues to RQ (no ledger), and one that
hands the work to FastAPI's BackgroundTasks (no durability). Only `make bench` serves it:
`uvicorn --factory bench.app:create_bench_app`."""

import functools
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from service import broker, registry
from service.main import create_app
from service.schemas import JobIn

baselines = APIRouter(prefix="/bench")


def create_bench_app() -> FastAPI:
    app = create_app()
    app.include_router(baselines)
    return app


@baselines.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@baselines.post("/rq-only", status_code=202)
async def rq_only(body: JobIn, request: Request) -> dict[str, Any]:
    task = registry.get(body.task)
    args = task.validate(body.args)
    job_id = uuid4()
    queue = broker.queue(task.queue, request.app.state.redis)
    await run_in_threadpool(
        functools.partial(
            queue.enqueue_call,
            func=task.func,
            kwargs=args,
            job_id=str(job_id),
            timeout=task.timeout_s,
            result_ttl=500,
            failure_ttl=500,
            description=task.name,
        )
    )
    return {"id": str(job_id), "status": "queued"}


@baselines.post("/background", status_code=202)
async def background(body: JobIn, tasks: BackgroundTasks) -> dict[str, Any]:
    task = registry.get(body.task)
    args = task.validate(body.args)
    tasks.add_task(task.func, **args)
    return {"id": str(uuid4()), "status": "accepted"}
