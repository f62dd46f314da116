"""Tasks that exist only for tests; the `test_tasks` fixture registers them for one test."""

import os
import time

from service.task_api import RateLimited, TaskArgs, current, parents, save_artifact, task


class NoArgs(TaskArgs):
    pass


@task(name="nul_result", timeout_s=10)
def nul_result(args: NoArgs) -> str:
    """Return a string PostgreSQL's JSONB cannot hold."""
    return "before\x00after"


@task(name="set_result", timeout_s=10)
def set_result(args: NoArgs) -> object:
    """Return a set, which JSON cannot hold."""
    return {1, 2}


@task(name="raise_unstorable", timeout_s=10)
def raise_unstorable(args: NoArgs) -> None:
    """Raise with a message PostgreSQL cannot store as is (NUL, a lone surrogate) and too
    long to keep whole."""
    raise RuntimeError("before\x00after \ud800 " + "x" * 50_000)


class BeatArgs(TaskArgs):
    seconds: float
    path: str


@task(name="beat", timeout_s=3600)
def beat(args: BeatArgs) -> float:
    """For `seconds`, append "<attempt> <unix time>" to the file at `path` every 0.1 s: when
    the job really ran, recorded outside the ledger."""
    attempt = current().attempt
    end = time.monotonic() + args.seconds
    with open(args.path, "a") as out:
        while time.monotonic() < end:
            out.write(f"{attempt} {time.time()}\n")
            out.flush()
            time.sleep(0.1)
    return args.seconds


class ArtifactArgs(TaskArgs):
    size: int


@task(name="big_artifact", timeout_s=60)
def big_artifact(args: ArtifactArgs) -> dict[str, object]:
    """Keep an artifact of `size` bytes."""
    return {"artifacts": [save_artifact("big.bin", b"x" * args.size, "application/octet-stream")]}


class FlakyArgs(TaskArgs):
    fail_times: int


@task(name="flaky", timeout_s=10)
def flaky(args: FlakyArgs) -> int:
    """Fail the first `fail_times` attempts, then return the attempt that succeeded."""
    attempt = current().attempt
    if attempt <= args.fail_times:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


class MarkArgs(TaskArgs):
    path: str


@task(name="mark", timeout_s=10)
def mark(args: MarkArgs) -> int:
    """Append "<attempt> <pid>" to the file at `path` each time it runs: how often the job
    really ran, recorded outside the ledger."""
    with open(args.path, "a") as out:
        out.write(f"{current().attempt} {os.getpid()}\n")
    return current().attempt


class AddArgs(TaskArgs):
    value: int = 0
    sleep_s: float = 0


@task(name="add_parents", timeout_s=30)
def add_parents(args: AddArgs) -> int:
    """`value` plus the results of the jobs this one waited for: a result passed along a
    chain, read through the task's context (after `sleep_s`)."""
    time.sleep(args.sleep_s)
    return args.value + sum(p["result"] or 0 for p in parents() if p["status"] == "finished")


class SyncArgs(TaskArgs):
    customer: int


@task(name="sync_customer", timeout_s=30, unique_for_s=300)
def sync_customer(args: SyncArgs) -> int:
    """A task whose jobs are unique by default: one sync of a customer at a time."""
    return args.customer


class LimitedArgs(TaskArgs):
    limiter: str = "t20"
    slow_down_s: float = 0  # on its first attempt, raise RateLimited(slow_down_s)


@task(name="limited", timeout_s=10, rate_limit=lambda args: args.get("limiter", "t20"))
def limited(args: LimitedArgs) -> int:
    """Start no faster than the limiter `limiter` allows; told to slow down on the first
    attempt if `slow_down_s`. Returns its attempt."""
    attempt = current().attempt
    if args.slow_down_s and attempt == 1:
        raise RateLimited(args.slow_down_s)
    return attempt
