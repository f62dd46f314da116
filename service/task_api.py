"""What a task module imports: the whole public API for writing tasks.

    from pydantic import Field
    from service.task_api import TaskArgs, task, report_progress

    class ResizeArgs(TaskArgs):
        width: int = Field(ge=1)

    @task(name="resize", queue="images", timeout_s=60, max_attempts=3)
    def resize(args: ResizeArgs) -> dict[str, int]:
        report_progress(0.5, "half way")
        return {"width": args.width}

List the module in JOBS_TASK_MODULES; the API, workers and reconciler load it by name.
"""

from service.context import (
    JobContext,
    current,
    parents,
    report_progress,
    save_artifact,
    task_stats,
    upload_path,
)
from service.errors import PermanentError, ResultInvalid
from service.ledger import STATS_COLUMNS
from service.outbound import WebhookRefused, post, public_address
from service.registry import TaskArgs, task

__all__ = [
    "STATS_COLUMNS",
    "JobContext",
    "PermanentError",
    "ResultInvalid",
    "TaskArgs",
    "WebhookRefused",
    "current",
    "parents",
    "post",
    "public_address",
    "report_progress",
    "save_artifact",
    "task",
    "task_stats",
    "upload_path",
]
