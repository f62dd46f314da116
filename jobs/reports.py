"""`generate_report`: the ledger's own numbers, per task, as a CSV or JSON artifact."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from service.task_api import (
    STATS_COLUMNS,
    TaskArgs,
    report_progress,
    save_artifact,
    task,
    task_stats,
)


class ReportArgs(TaskArgs):
    model_config = ConfigDict(json_schema_extra={"examples": [{"format": "json"}]})

    since: AwareDatetime | None = Field(default=None, description="default: 24 hours before until")
    until: AwareDatetime | None = Field(default=None, description="default: now")
    format: Literal["csv", "json"] = "csv"

    @model_validator(mode="after")
    def _ordered(self) -> "ReportArgs":
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


@task(name="generate_report", queue="reports", timeout_s=600, max_attempts=3, backoff_s=10)
def generate_report(args: ReportArgs) -> dict[str, Any]:
    """Counts, success rate and run-time percentiles per task, for your jobs in a time range."""
    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(days=1)
    report_progress(0.1, "querying the ledger")
    rows = task_stats(since, until)
    report_progress(0.7, f"writing {len(rows)} rows")
    if args.format == "json":
        body = {"since": since.isoformat(), "until": until.isoformat(), "tasks": rows}
        artifact = save_artifact(
            "report.json", json.dumps(body, indent=2).encode(), "application/json"
        )
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=STATS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        artifact = save_artifact("report.csv", out.getvalue().encode(), "text/csv")
    report_progress(1.0, "done")
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "tasks": len(rows),
        "artifacts": [artifact],
    }
