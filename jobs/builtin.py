"""Built-in tasks for smoke tests and diagnostics."""

import time

from pydantic import ConfigDict, Field, JsonValue

from service.task_api import TaskArgs, report_progress, task


class EchoArgs(TaskArgs):
    model_config = ConfigDict(json_schema_extra={"examples": [{"value": "hello"}]})

    value: JsonValue = Field(default=None, description="returned unchanged as the result")


@task(name="echo", timeout_s=30)
def echo(args: EchoArgs) -> JsonValue:
    """Return `value` unchanged."""
    return args.value


class SleepArgs(TaskArgs):
    model_config = ConfigDict(json_schema_extra={"examples": [{"seconds": 2}]})

    seconds: float = Field(ge=0, le=3600, description="how long to sleep")


@task(name="sleep", timeout_s=3700)
def sleep(args: SleepArgs) -> float:
    """Sleep for `seconds`, reporting progress each second, then return them."""
    end = time.monotonic() + args.seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        if args.seconds >= 2:
            done = min(1.0, 1 - max(0.0, end - time.monotonic()) / args.seconds)
            report_progress(done, f"{done:.0%} slept")
    return args.seconds


class FailArgs(TaskArgs):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message": "boom"}]})

    message: str = Field(default="failed on purpose", max_length=10_000)


class TaskFailed(Exception):
    """Raised by the `fail` task."""


@task(name="fail", timeout_s=30)
def fail(args: FailArgs) -> None:
    """Raise an error with `message`."""
    raise TaskFailed(args.message)
