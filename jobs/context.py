"""What a running task can reach: its job, progress reports, artifacts, uploads, the ledger.

The worker enters a context around each job (in the work horse, or in-process for
`--simple`); tasks call the module functions:

    from jobs import context
    context.report_progress(0.5, "half way")
    info = context.save_artifact("report.csv", data, "text/csv")
"""

import hashlib
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import Engine

from service.settings import Settings

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class JobContext:
    job_id: UUID
    attempt: int
    owner: str
    settings: Settings
    engine: Callable[[], Engine]  # this process's ledger engine
    write: Callable[..., Any]  # the worker's retrying ledger write


_current: JobContext | None = None


@contextmanager
def entered(ctx: JobContext) -> Any:
    global _current
    _current = ctx
    try:
        yield ctx
    finally:
        _current = None


def current() -> JobContext:
    if _current is None:
        raise RuntimeError("no job is running here: call this from inside a task")
    return _current


def report_progress(value: float, message: str | None = None) -> None:
    """Show how far the job is (0..1, and a short message) on its ledger row."""
    from service import ledger

    ctx = current()
    value = min(1.0, max(0.0, float(value)))
    ctx.write(ledger.progress, ctx.job_id, ctx.attempt, value, (message or None) and message[:500])


def artifact_dir(job_id: UUID, settings: Settings) -> Path:
    return settings.artifacts_dir / "jobs" / str(job_id)


def is_safe_name(name: str) -> bool:
    """A plain file name: no path separators, no leading dot."""
    return bool(_SAFE_NAME.match(name))


def save_artifact(name: str, data: bytes, content_type: str) -> dict[str, Any]:
    """Keep a file the job made; returns what to put in the result's `artifacts` list."""
    if not is_safe_name(name):
        raise ValueError(f"artifact name {name!r} is not a plain file name")
    ctx = current()
    directory = artifact_dir(ctx.job_id, ctx.settings)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{name}.partial"
    partial.write_bytes(data)
    partial.replace(directory / name)  # readers never see half a file
    return {
        "name": name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": content_type,
    }


def uploads_dir(owner: str, settings: Settings) -> Path:
    """A client's uploads; the directory is named by a hash of the client, never by input."""
    return settings.artifacts_dir / "uploads" / hashlib.sha256(owner.encode()).hexdigest()[:24]


def upload_path(upload_id: UUID) -> Path:
    """The file of one of this job's owner's uploads (another client's is not reachable)."""
    ctx = current()
    return uploads_dir(ctx.owner, ctx.settings) / str(upload_id)
