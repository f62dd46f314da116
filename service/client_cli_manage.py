"""`jobsvc schedules …`, `queues …`, `rate-limits …` and `bulk …`: cron schedules (by name
or id), queues, shared limiters and cancel or retry by filter from the shell, through
`service.client`."""

from collections.abc import Callable
from typing import Any, TypeVar

import click

from service import bulk_filters
from service.client_shell import (
    STATUSES,
    connect,
    echo_json,
    echo_lines,
    fail,
    json_object,
    json_option,
    key_option,
    url_option,
)


@click.group(short_help="Your cron schedules, by name or id.")
def schedules() -> None:
    """Your cron schedules: list, show, create, pause, resume, delete. SCHEDULE is a
    schedule's name or its id."""


@schedules.command("list")
@json_option
@url_option
@key_option
def schedules_list(as_json: bool, url: str, key: str | None) -> None:
    """One line a schedule: id, name, cron (timezone), task, next tick or paused."""
    with connect(url, key) as jobs:
        found = jobs.schedules()
    if as_json:
        echo_json(found)
        return
    echo_lines(
        (
            f"{s['id']}  {s['name']}  {s['cron']} ({s['timezone']})  {s['task']}  "
            + ("paused" if s["paused"] else f"next {s['next_fire_at']}")
            for s in found
        ),
        'no schedules: create one with `jobsvc schedules create NAME "CRON" TASK`',
    )


@schedules.command("show")
@click.argument("schedule")
@url_option
@key_option
def schedules_show(schedule: str, url: str, key: str | None) -> None:
    """The schedule, its next five ticks and the newest jobs it fired."""
    with connect(url, key) as jobs:
        echo_json(jobs.schedule(schedule))


@schedules.command("create")
@click.argument("name")
@click.argument("cron")
@click.argument("task")
@click.argument("args_json", default="{}")
@click.option("--timezone", default="UTC", show_default=True, help="an IANA time zone")
@click.option("--queue", default=None)
@click.option(
    "--catch-up",
    type=click.Choice(["latest", "all", "none"]),
    default="latest",
    show_default=True,
    help="what to fire for ticks missed while no reconciler ran",
)
@click.option("--paused", is_flag=True, help="create it paused")
@url_option
@key_option
def schedules_create(
    name: str,
    cron: str,
    task: str,
    args_json: str,
    timezone: str,
    queue: str | None,
    catch_up: str,
    paused: bool,
    url: str,
    key: str | None,
) -> None:
    """Fire TASK with ARGS_JSON at each tick of CRON (quote it: "0 3 * * *")."""
    args = json_object(args_json, "ARGS_JSON")
    fields = {"timezone": timezone, "queue": queue, "catch_up": catch_up, "paused": paused}
    with connect(url, key) as jobs:
        echo_json(jobs.create_schedule(name, cron, task, args, **fields))


def _set_paused(paused: bool) -> Any:
    @click.argument("schedule")
    @url_option
    @key_option
    def command(schedule: str, url: str, key: str | None) -> None:
        with connect(url, key) as jobs:
            echo_json(jobs.update_schedule(schedule, paused=paused))

    return command


schedules.command("pause", help="Stop firing SCHEDULE until it is resumed.")(_set_paused(True))
schedules.command("resume", help="Fire SCHEDULE again, from its next tick.")(_set_paused(False))


@schedules.command("delete")
@click.argument("schedule")
@url_option
@key_option
def schedules_delete(schedule: str, url: str, key: str | None) -> None:
    """Delete the schedule (the jobs it fired stay)."""
    with connect(url, key) as jobs:
        jobs.delete_schedule(schedule)
    click.echo(f"schedule {schedule} deleted", err=True)


@click.group(short_help="Queues: list, pause, resume (admin).")
def queues() -> None:
    """Queues (an admin key): list them, pause one, resume it."""


@queues.command("list")
@json_option
@url_option
@key_option
def queues_list(as_json: bool, url: str, key: str | None) -> None:
    """One line a queue: name, waiting, running, oldest wait, workers, paused."""
    with connect(url, key) as jobs:
        found = jobs.queues()
    if as_json:
        echo_json(found)
        return
    echo_lines(
        (
            f"{q['name']:<12} queued {q['queued']:<6} running {q['running']:<4} "
            f"oldest {q['oldest_age_s']:.0f} s  workers {q['workers']}  "
            + (f"paused by {q['paused_by']}" if q["paused"] else "open")
            for q in found
        ),
        "no queues",
    )


def _queue_command(pause: bool) -> Any:
    @click.argument("name")
    @url_option
    @key_option
    def command(name: str, url: str, key: str | None) -> None:
        with connect(url, key) as jobs:
            echo_json(jobs.pause_queue(name) if pause else jobs.resume_queue(name))

    return command


queues.command("pause", help="Workers leave NAME's jobs queued until it is resumed.")(
    _queue_command(True)
)
queues.command("resume", help="Workers take NAME's jobs again.")(_queue_command(False))


@click.group("rate-limits", short_help="Shared rate limits (admin).")
def rate_limits() -> None:
    """Shared limiters of resources (an admin key): list them, set a rate, delete one."""


@rate_limits.command("list")
@json_option
@url_option
@key_option
def rate_limits_list(as_json: bool, url: str, key: str | None) -> None:
    """One line a limiter: name, rate, jobs started and throttled, last back-off."""
    with connect(url, key) as jobs:
        found = jobs.rate_limits()
    if as_json:
        echo_json(found)
        return
    echo_lines(
        (
            f"{lim['name']:<24} {_rate(lim['per_s']):<10} started {lim['started']:<8} "
            f"throttled {lim['throttled']:<6} backed off until {lim['backed_off_until']}"
            for lim in found
        ),
        "no rate limits: set one with `jobsvc rate-limits set NAME 20/s`",
    )


def _rate(per_s: float | None) -> str:
    return "no rate" if per_s is None else f"{per_s:g}/s"


@rate_limits.command("set")
@click.argument("name")
@click.argument("rate")
@url_option
@key_option
def rate_limits_set(name: str, rate: str, url: str, key: str | None) -> None:
    """Start NAME's jobs at most at RATE (N/s, N/min or N/h; `none`: no rate)."""
    with connect(url, key) as jobs:
        echo_json(jobs.set_rate_limit(name, None if rate == "none" else rate))


@rate_limits.command("delete")
@click.argument("name")
@url_option
@key_option
def rate_limits_delete(name: str, url: str, key: str | None) -> None:
    """Forget NAME: its jobs start as fast as workers take them."""
    with connect(url, key) as jobs:
        jobs.delete_rate_limit(name)
    click.echo(f"limiter {name} deleted", err=True)


C = TypeVar("C", bound=Callable[..., Any])

# Each bulk filter is an option of `jobsvc bulk`: a text by default, or as said here.
_FILTER_OPTIONS: dict[str, dict[str, Any]] = {
    "status": {"type": click.Choice(STATUSES)},
    "created_after": {"help": "ISO 8601 with a timezone"},
    "created_before": {"help": "ISO 8601 with a timezone"},
    "owner": {"help": "an admin's filter: one client's jobs"},
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _filter_options(command: C) -> C:
    """An option for each of the API's bulk filters (`service.bulk_filters`), in its order."""
    for name in reversed(bulk_filters.FILTERS):
        option = click.option(_option(name), default=None, **_FILTER_OPTIONS.get(name, {}))
        command = option(command)
    return command


@click.command(short_help="Cancel or retry the jobs a filter selects.")
@click.argument("action", type=click.Choice(["cancel", "retry"]))
@_filter_options
@click.option("--all", "every", is_flag=True, help="no filter: every job, on purpose")
@click.option("--limit", type=int, default=None, help="the most jobs changed")
@click.option("--dry-run", is_flag=True, help="count the jobs and show some; change nothing")
@url_option
@key_option
def bulk(
    action: str,
    every: bool,
    dry_run: bool,
    limit: int | None,
    url: str,
    key: str | None,
    **filters: Any,
) -> None:
    """Cancel or retry every job the filters select (as GET /jobs'); prints the count,
    how many changed and a sample. With no filter it asks for --all."""
    given = {k: v for k, v in filters.items() if v is not None}
    if not given and not every:
        fail(
            f"bulk {action} with no filter would {action} every job of yours: "
            f"name a filter ({', '.join(_option(name) for name in bulk_filters.FILTERS)}), "
            "or pass --all to mean every job"
        )
    if every:
        given["all"] = True
    if limit is not None:
        given["limit"] = limit
    with connect(url, key) as jobs:
        run = jobs.cancel_many if action == "cancel" else jobs.retry_many
        echo_json(run(dry_run=dry_run, **given))


COMMANDS = [schedules, queues, rate_limits, bulk]
