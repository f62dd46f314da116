"""What a task module imports: the whole public API for writing tasks.

    from pydantic import Field
    from service.task_api import TaskArgs, task, report_progress

    class ResizeArgs(TaskArgs):
        width: int = Field(ge=1)

    @task(name="resize", queue="images", timeout_s=60, max_attempts=3)
    def resize(args: ResizeArgs) -> dict[str, int]:
        report_progress(0.5, "half way")
        return {"width": args.width}

    schedule("nightly-resize", "0 3 * * *", "resize", {"width": 64}, timezone="Europe/Paris")

List the module in JOBS_TASK_MODULES; the API, workers and reconciler load it by name. A
`schedule` declared in a task module fires its job as the client `system`.
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
from service.errors import PermanentError, RateLimited, ResultInvalid
from service.ledger import STATS_COLUMNS
from service.outbound import WebhookRefused, post, public_address
from service.registry import TaskArgs, task
from service.schedules import declare as schedule

__all__ = [
    "STATS_COLUMNS",
    "JobContext",
    "PermanentError",
    "RateLimited",
    "ResultInvalid",
    "TaskArgs",
    "WebhookRefused",
    "current",
    "parents",
    "post",
    "public_address",
    "report_progress",
    "save_artifact",
    "schedule",
    "task",
    "task_stats",
    "upload_path",
]
