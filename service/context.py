"""What a running task can reach: its job, progress reports, artifacts, uploads, the ledger.

The worker enters a context around each job (in the work horse, or in-process for
`--simple`); tasks reach it through `service.task_api`.
"""

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import Engine

from service import dependencies, ledger, storage
from service.settings import Settings


@dataclass(frozen=True)
class JobContext:
    job_id: UUID
    attempt: int
    owner: str
    settings: Settings
    engine: Callable[[], Engine]  # this process's ledger engine, for a task's own SQL
    write: Callable[..., Any]  # the worker's retrying ledger write
    depends_on: list[UUID] | None = None  # the jobs it waited for


_current: JobContext | None = None


@contextmanager
def entered(ctx: JobContext) -> Iterator[JobContext]:
    global _current
    _current = ctx
    try:
        yield ctx
    finally:
        _current = None


def current() -> JobContext:
    """The running job's context; RuntimeError outside a task."""
    if _current is None:
        raise RuntimeError("no job is running here: call this from inside a task")
    return _current


def report_progress(value: float, message: str | None = None) -> None:
    """Show how far the job is (0..1, and a short message) on its ledger row."""
    ctx = current()
    value = min(1.0, max(0.0, float(value)))
    note = ledger.storable(message, 500) if message else None
    ctx.write(ledger.progress, ctx.job_id, ctx.attempt, value, note)


def save_artifact(name: str, data: bytes, content_type: str) -> dict[str, object]:
    """Keep a file the job made; returns what to put in the result's `artifacts` list."""
    if not storage.is_safe_name(name):
        raise ValueError(f"artifact name {name!r} is not a plain file name")
    ctx = current()
    storage.write_whole(storage.artifact_dir(ctx.settings.artifacts_dir, ctx.job_id) / name, data)
    return {
        "name": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": content_type,
    }


def upload_path(upload_id: UUID) -> Path:
    """The file of one of this job's owner's uploads (another client's is not reachable)."""
    ctx = current()
    return storage.uploads_dir(ctx.settings.artifacts_dir, ctx.owner) / str(upload_id)


def parents() -> list[dict[str, object]]:
    """The jobs the running job waited for (its depends_on; for a batch's on_complete job,
    every job of the batch), in that order: each one's id, task, status, result and
    error. Empty for a job that waited for none."""
    ctx = current()
    if not ctx.depends_on:
        return []
    with ctx.engine().connect() as conn:
        return dependencies.parents(conn, ctx.job_id)


def task_stats(since: datetime, until: datetime) -> list[dict[str, object]]:
    """Per task, for the running job's owner's jobs created in [since, until): counts by
    status, success rate and run-time percentiles (`ledger.STATS_COLUMNS`)."""
    ctx = current()
    with ctx.engine().connect() as conn:
        return ledger.task_stats(conn, ctx.owner, since, until)
