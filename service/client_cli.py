"""`jobsvc submit`, `batch`, `status`, `cancel`, `bulk`, `schedules …`, `queues …` and
`rate-limits …`: the API from the shell, through `service.client`. The API's address and
key come from --url/--key or JOBS_URL/JOBS_API_KEY."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import httpx

from service.client import FINAL, JobsClient, JobsError

url_option = click.option(
    "--url",
    envvar="JOBS_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="the API [JOBS_URL]",
)
key_option = click.option("--key", envvar="JOBS_API_KEY", default=None, help="[JOBS_API_KEY]")


def _print(job: Any) -> None:
    click.echo(json.dumps(job, indent=2))


def _exit_for(job: dict[str, Any]) -> None:
    """0 when the job finished, 1 when it failed or was canceled."""
    sys.exit(0 if job["status"] == "finished" else 1)


@click.command()
@click.argument("task")
@click.argument("args_json", default="{}")
@click.option("--wait", "wait_", is_flag=True, help="wait for the final state (progress shown)")
@click.option("--queue", default=None)
@click.option("--delay", "delay_s", type=float, default=None, help="seconds from now")
@click.option("--idempotency-key", default=None)
@click.option("--after", multiple=True, metavar="JOB_ID", help="wait for this job (repeatable)")
@click.option(
    "--on-parent-failure",
    type=click.Choice(["cancel", "run"]),
    default=None,
    help="with --after: cancel this job if a parent fails (default), or run it anyway",
)
@click.option(
    "--unique-for",
    "unique_for_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="a unique job: a repeat within SECONDS gets this job back",
)
@click.option("--unique-key", default=None, help="with --unique-for (default: task and args)")
@url_option
@key_option
def submit(
    task: str,
    args_json: str,
    wait_: bool,
    queue: str | None,
    delay_s: float | None,
    idempotency_key: str | None,
    after: tuple[str, ...],
    on_parent_failure: str | None,
    unique_for_s: float | None,
    unique_key: str | None,
    url: str,
    key: str | None,
) -> None:
    """Submit TASK with ARGS_JSON (a JSON object); prints the job."""
    args = _json_object(args_json, "ARGS_JSON")
    given = {
        "queue": queue,
        "delay_s": delay_s,
        "depends_on": list(after) or None,
        "on_parent_failure": on_parent_failure,
        "unique_for_s": unique_for_s,
        "unique_key": unique_key,
    }
    options = {k: v for k, v in given.items() if v is not None}
    with JobsClient(url, key) as jobs, _api_errors():
        job = jobs.submit(task, args, idempotency_key=idempotency_key, **options)
        if not wait_:
            _print(job)
            return
        click.echo(f"job {job['id']} {job['status']}", err=True)
        final = _follow(jobs, job["id"])
    _print(final)
    _exit_for(final)


@click.command()
@click.argument("workflow", type=click.File("r"))
@url_option
@key_option
def batch(workflow: Any, url: str, key: str | None) -> None:
    """Submit the jobs in WORKFLOW (a JSON file, or - for stdin), all or nothing: the body
    of POST /jobs/batch, `{"jobs": [...], "on_complete": {...}}`, where jobs may name each
    other's `ref` in `depends_on`. Prints the jobs, each ref's id and the on_complete job."""
    body = _json_object(workflow.read(), "WORKFLOW")
    if not isinstance(body.get("jobs"), list):
        raise click.BadParameter('needs "jobs": a list of jobs', param_hint="WORKFLOW")
    with JobsClient(url, key) as jobs, _api_errors():
        _print(jobs.submit_batch(body["jobs"], on_complete=body.get("on_complete")))


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return value


def _follow(jobs: JobsClient, job_id: str) -> dict[str, Any]:
    """Follow the job's stream to its end; a progress bar on stderr while it reports any."""
    bar = _ProgressBar()
    final: dict[str, Any] = {}
    for event, data in jobs.stream(job_id):
        if event == "progress":
            bar.show(data.get("value") or 0.0, data.get("message") or "")
        elif event == "job":
            final = data
        elif event != "callback":
            bar.done()
            click.echo(f"job {job_id} {event}", err=True)
    bar.done()
    return final or jobs.get(job_id)


class _ProgressBar:
    WIDTH = 30

    def __init__(self) -> None:
        self.shown = False

    def show(self, value: float, message: str) -> None:
        filled = round(max(0.0, min(1.0, value)) * self.WIDTH)
        line = f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {value:4.0%} {message[:60]}"
        click.echo(line.ljust(self.WIDTH + 72), err=True, nl=False)
        self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)
            self.shown = False


@click.command()
@click.argument("job_id")
@click.option("--wait", "wait_s", type=float, default=0, help="long-poll up to this many seconds")
@url_option
@key_option
def status(job_id: str, wait_s: float, url: str, key: str | None) -> None:
    """Print the job JOB_ID."""
    with JobsClient(url, key) as jobs, _api_errors():
        job = jobs.get(job_id, wait=wait_s)
    _print(job)
    if job["status"] in FINAL:
        _exit_for(job)


@click.command()
@click.argument("job_id")
@url_option
@key_option
def cancel(job_id: str, url: str, key: str | None) -> None:
    """Cancel the job JOB_ID; prints the job and what the cancel did."""
    with JobsClient(url, key) as jobs, _api_errors():
        _print(jobs.cancel(job_id))


@click.group()
def schedules() -> None:
    """Your cron schedules: list, show, create, pause, resume, delete."""


@schedules.command("list")
@url_option
@key_option
def schedules_list(url: str, key: str | None) -> None:
    """One line a schedule: id, name, cron (timezone), task, next tick or paused."""
    with JobsClient(url, key) as jobs, _api_errors():
        for s in jobs.schedules():
            when = "paused" if s["paused"] else f"next {s['next_fire_at']}"
            click.echo(
                f"{s['id']}  {s['name']}  {s['cron']} ({s['timezone']})  {s['task']}  {when}"
            )


@schedules.command("show")
@click.argument("schedule_id")
@url_option
@key_option
def schedules_show(schedule_id: str, url: str, key: str | None) -> None:
    """The schedule, its next five ticks and the newest jobs it fired."""
    with JobsClient(url, key) as jobs, _api_errors():
        _print(jobs.schedule(schedule_id))


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
    args = _json_object(args_json, "ARGS_JSON")
    fields = {"timezone": timezone, "queue": queue, "catch_up": catch_up, "paused": paused}
    with JobsClient(url, key) as jobs, _api_errors():
        _print(jobs.create_schedule(name, cron, task, args, **fields))


def _set_paused(paused: bool) -> Any:
    @click.argument("schedule_id")
    @url_option
    @key_option
    def command(schedule_id: str, url: str, key: str | None) -> None:
        with JobsClient(url, key) as jobs, _api_errors():
            _print(jobs.update_schedule(schedule_id, paused=paused))

    return command


schedules.command("pause", help="Stop firing SCHEDULE_ID until it is resumed.")(_set_paused(True))
schedules.command("resume", help="Fire SCHEDULE_ID again, from its next tick.")(_set_paused(False))


@schedules.command("delete")
@click.argument("schedule_id")
@url_option
@key_option
def schedules_delete(schedule_id: str, url: str, key: str | None) -> None:
    """Delete the schedule (the jobs it fired stay)."""
    with JobsClient(url, key) as jobs, _api_errors():
        jobs.delete_schedule(schedule_id)
    click.echo(f"schedule {schedule_id} deleted", err=True)


@click.group()
def queues() -> None:
    """Queues (an admin key): list them, pause one, resume it."""


@queues.command("list")
@url_option
@key_option
def queues_list(url: str, key: str | None) -> None:
    """One line a queue: name, waiting, running, oldest wait, workers, paused."""
    with JobsClient(url, key) as jobs, _api_errors():
        for q in jobs.queues():
            state = f"paused by {q['paused_by']}" if q["paused"] else "open"
            click.echo(
                f"{q['name']:<12} queued {q['queued']:<6} running {q['running']:<4} "
                f"oldest {q['oldest_age_s']:.0f} s  workers {q['workers']}  {state}"
            )


def _queue_command(pause: bool) -> Any:
    @click.argument("name")
    @url_option
    @key_option
    def command(name: str, url: str, key: str | None) -> None:
        with JobsClient(url, key) as jobs, _api_errors():
            _print(jobs.pause_queue(name) if pause else jobs.resume_queue(name))

    return command


queues.command("pause", help="Workers leave NAME's jobs queued until it is resumed.")(
    _queue_command(True)
)
queues.command("resume", help="Workers take NAME's jobs again.")(_queue_command(False))


@click.group("rate-limits")
def rate_limits() -> None:
    """Shared limiters of resources (an admin key): list them, set a rate, delete one."""


@rate_limits.command("list")
@url_option
@key_option
def rate_limits_list(url: str, key: str | None) -> None:
    """One line a limiter: name, rate, jobs started and throttled, last back-off."""
    with JobsClient(url, key) as jobs, _api_errors():
        for lim in jobs.rate_limits():
            rate = "no rate" if lim["per_s"] is None else f"{lim['per_s']:g}/s"
            click.echo(
                f"{lim['name']:<24} {rate:<10} started {lim['started']:<8} "
                f"throttled {lim['throttled']:<6} backed off until {lim['backed_off_until']}"
            )


@rate_limits.command("set")
@click.argument("name")
@click.argument("rate")
@url_option
@key_option
def rate_limits_set(name: str, rate: str, url: str, key: str | None) -> None:
    """Start NAME's jobs at most at RATE (N/s, N/min or N/h; `none`: no rate)."""
    with JobsClient(url, key) as jobs, _api_errors():
        _print(jobs.set_rate_limit(name, None if rate == "none" else rate))


@rate_limits.command("delete")
@click.argument("name")
@url_option
@key_option
def rate_limits_delete(name: str, url: str, key: str | None) -> None:
    """Forget NAME: its jobs start as fast as workers take them."""
    with JobsClient(url, key) as jobs, _api_errors():
        jobs.delete_rate_limit(name)
    click.echo(f"limiter {name} deleted", err=True)


@click.command()
@click.argument("action", type=click.Choice(["cancel", "retry"]))
@click.option("--status", default=None)
@click.option("--task", default=None)
@click.option("--queue", default=None)
@click.option("--created-after", default=None, help="ISO 8601 with a timezone")
@click.option("--created-before", default=None, help="ISO 8601 with a timezone")
@click.option("--owner", default=None, help="an admin's filter: one client's jobs")
@click.option("--limit", type=int, default=None, help="the most jobs changed")
@click.option("--dry-run", is_flag=True, help="count the jobs and show some; change nothing")
@url_option
@key_option
def bulk(
    action: str, dry_run: bool, limit: int | None, url: str, key: str | None, **filters: Any
) -> None:
    """Cancel or retry every job the filters select (as GET /jobs'); prints the count,
    how many changed and a sample."""
    given = {k: v for k, v in filters.items() if v is not None}
    if limit is not None:
        given["limit"] = limit
    with JobsClient(url, key) as jobs, _api_errors():
        run = jobs.cancel_many if action == "cancel" else jobs.retry_many
        _print(run(dry_run=dry_run, **given))


@contextmanager
def _api_errors() -> Iterator[None]:
    """Turn API errors into a one-line message and exit status 2."""
    try:
        yield
    except JobsError as exc:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        click.echo(f"jobsvc: the API answered {exc.status_code}: {detail}", err=True)
        sys.exit(2)
    except httpx.HTTPError as exc:
        click.echo(f"jobsvc: cannot reach the API: {exc}", err=True)
        sys.exit(2)


COMMANDS = [submit, batch, status, cancel, bulk, schedules, queues, rate_limits]
