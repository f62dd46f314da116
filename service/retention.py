"""`cleanup`: retention. Final jobs older than the retention period go, with their events,
artifacts and old uploads, in bounded batches.

A schedule declared here fires it at JOBS_CLEANUP_CRON (hourly) as the client `system`,
which cleans every client's jobs past JOBS_RETENTION_DAYS. Submitted by hand, it cleans only the
caller's own jobs, optionally with a shorter `older_than_days`.
"""

import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from service import context, keys, ledger, schedules, storage
from service.registry import TaskArgs, task


class CleanupArgs(TaskArgs):
    older_than_days: float | None = Field(
        default=None, ge=0, description="default: JOBS_RETENTION_DAYS"
    )


@task(name="cleanup", queue="default", timeout_s=1800, max_attempts=3, backoff_s=60)
def cleanup(args: CleanupArgs) -> dict[str, Any]:
    """Delete final jobs, their events and artifacts past retention (yours, or all for system)."""
    ctx = context.current()
    days = ctx.settings.retention_days if args.older_than_days is None else args.older_than_days
    before = datetime.now(UTC) - timedelta(days=days)
    owner = None if ctx.owner == keys.SYSTEM_CLIENT else ctx.owner
    root = ctx.settings.artifacts_dir
    deleted = 0
    while True:
        with ctx.engine().begin() as conn:
            ids = ledger.delete_final(conn, before, owner, ctx.settings.cleanup_batch)
        for job_id in ids:
            shutil.rmtree(storage.artifact_dir(root, job_id), ignore_errors=True)
        deleted += len(ids)
        context.report_progress(0.5, f"{deleted} jobs deleted")
        if len(ids) < ctx.settings.cleanup_batch:
            break
    uploads = _old_uploads(ctx, owner, before.timestamp())
    return {"deleted_jobs": deleted, "deleted_uploads": uploads, "before": before.isoformat()}


def _old_uploads(ctx: context.JobContext, owner: str | None, before: float) -> int:
    root = ctx.settings.artifacts_dir
    folders = (
        [storage.uploads_dir(root, owner)] if owner else list(storage.uploads_root(root).glob("*"))
    )
    removed = 0
    for folder in folders:
        for path in folder.glob("*"):
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


schedules.declare("cleanup", lambda settings: settings.cleanup_cron, "cleanup")
