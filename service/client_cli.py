"""`jobsvc submit`, `batch`, `status`, `list`, `events`, `cancel`, `retry` and `tasks`:
jobs from the shell, through `service.client` (schedules, queues, rate limits and bulk
operations are in `service.client_cli_manage`). The API's address and key come from
--url/--key or JOBS_URL/JOBS_API_KEY."""

import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from service import client_cli_manage
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
from service.client_wire import FINAL

if TYPE_CHECKING:
    from service.client import JobsClient


def _exit_for(*jobs: dict[str, Any]) -> None:
    """0 when every job finished, 1 when one failed or was canceled."""
    sys.exit(0 if all(job["status"] == "finished" for job in jobs) else 1)


@click.command(short_help="Submit a job; --wait for its end.")
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
    args = json_object(args_json, "ARGS_JSON")
    given = {
        "queue": queue,
        "delay_s": delay_s,
        "depends_on": list(after) or None,
        "on_parent_failure": on_parent_failure,
        "unique_for_s": unique_for_s,
        "unique_key": unique_key,
    }
    options = {k: v for k, v in given.items() if v is not None}
    with connect(url, key) as jobs:
        _show(jobs, jobs.submit(task, args, idempotency_key=idempotency_key, **options), wait_)


@click.command(short_help="Submit a batch or workflow from a file.")
@click.argument("workflow", type=click.File("r"))
@click.option("--wait", "wait_", is_flag=True, help="wait until every job is final")
@url_option
@key_option
def batch(workflow: Any, wait_: bool, url: str, key: str | None) -> None:
    """Submit the jobs in WORKFLOW (a JSON file, or - for stdin), all or nothing: the body
    of POST /jobs/batch, `{"jobs": [...], "on_complete": {...}}`, where jobs may name each
    other's `ref` in `depends_on`. Prints the jobs, each ref's id and the on_complete job;
    with --wait, once all are final (exit 0 when every one finished, else 1)."""
    body = json_object(workflow.read(), "WORKFLOW")
    if not isinstance(body.get("jobs"), list):
        raise click.BadParameter('needs "jobs": a list of jobs', param_hint="WORKFLOW")
    with connect(url, key) as jobs:
        out = jobs.submit_batch(body["jobs"], on_complete=body.get("on_complete"))
        if not wait_:
            echo_json(out)
            return
        everyone = [*out["jobs"], *([out["on_complete"]] if out["on_complete"] else [])]
        click.echo(f"batch of {len(everyone)} jobs submitted; waiting for them", err=True)
        final = {job["id"]: jobs.wait(job["id"]) for job in everyone}
    out["jobs"] = [final[job["id"]] for job in out["jobs"]]
    if out["on_complete"]:
        out["on_complete"] = final[out["on_complete"]["id"]]
    counts = Counter(job["status"] for job in final.values())
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(f"{len(final)} jobs final: {summary}", err=True)
    echo_json(out)
    _exit_for(*final.values())


def _show(jobs: "JobsClient", job: dict[str, Any], wait_: bool) -> None:
    """Print the job; with --wait, follow it first and exit by its final status."""
    if not wait_:
        echo_json(job)
        return
    final = _follow(jobs, job)
    echo_json(final)
    _exit_for(final)


def _follow(jobs: "JobsClient", job: dict[str, Any]) -> dict[str, Any]:
    """Follow the job's stream to its end: each new status on stderr, and a progress bar
    while it reports any."""
    job_id = job["id"]
    click.echo(f"job {job_id} {job['status']}", err=True)
    bar = _ProgressBar()
    final: dict[str, Any] = {}
    caught_up = False  # the stream starts with the job's whole history: shown from `job` on
    for event, data in jobs.stream(job_id):
        if event == "progress":
            bar.show(data.get("value") or 0.0, data.get("message") or "")
        elif event == "job":
            final = data
        elif event == "callback":
            continue
        elif not caught_up:
            caught_up = (event, data.get("attempt")) == (job["status"], job["attempt"])
        else:
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


@click.command(short_help="Show a job.")
@click.argument("job_id")
@click.option("--wait", "wait_s", type=float, default=0, help="long-poll up to this many seconds")
@url_option
@key_option
def status(job_id: str, wait_s: float, url: str, key: str | None) -> None:
    """Print the job JOB_ID (exit 1 when it failed or was canceled)."""
    with connect(url, key) as jobs:
        job = jobs.get(job_id, wait=wait_s)
    echo_json(job)
    if job["status"] in FINAL:
        _exit_for(job)


@click.command("list", short_help="List your jobs by status, task, queue, time.")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--task", default=None)
@click.option("--queue", default=None)
@click.option("--parent", default=None, metavar="JOB_ID", help="the jobs that depend on it")
@click.option("--created-after", default=None, help="ISO 8601 with a timezone")
@click.option("--created-before", default=None, help="ISO 8601 with a timezone")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="jobs a page (the API's maximum: 500)")  # fmt: skip
@click.option("--cursor", default=None, help="the page after the one that printed it")
@click.option("--all-pages", is_flag=True, help="every page, not only the first")
@click.option("--oldest", is_flag=True, help="oldest first (reads every page)")
@json_option
@url_option
@key_option
def list_jobs(
    limit: int,
    cursor: str | None,
    all_pages: bool,
    oldest: bool,
    as_json: bool,
    url: str,
    key: str | None,
    **filters: str | None,
) -> None:
    """Your jobs, newest first, one line each: id, status, task, queue, attempt, created.
    One page unless --all-pages; the next page's --cursor is printed on stderr."""
    given = {k: v for k, v in filters.items() if v is not None}
    items: list[dict[str, Any]] = []
    with connect(url, key) as jobs:
        while True:
            page = jobs.list(**given, limit=limit, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None or not (all_pages or oldest):
                break
    if oldest:
        items.reverse()
    if as_json:
        echo_json({"items": items, "next_cursor": cursor})
        return
    echo_lines(map(_job_line, items), "no jobs" + (" match the filters" if given else ""))
    if cursor is not None:
        click.echo(f"more: jobsvc list … --cursor {cursor} (or --all-pages)", err=True)


def _job_line(job: dict[str, Any]) -> str:
    return (
        f"{job['id']}  {job['status']:<9}  {job['task']}  {job['queue']}  "
        f"attempt {job['attempt']}/{job['max_attempts']}  created {job['created_at']}"
    )


@click.command(short_help="Show a job's history.")
@click.argument("job_id")
@json_option
@url_option
@key_option
def events(job_id: str, as_json: bool, url: str, key: str | None) -> None:
    """The history of JOB_ID, oldest first: time, status, attempt, worker and what caused
    each change."""
    with connect(url, key) as jobs:
        found = jobs.events(job_id)
    if as_json:
        echo_json(found)
        return
    echo_lines(map(_event_line, found), "no events")


def _event_line(event: dict[str, Any]) -> str:
    detail = dict(event["detail"])
    parts = [f"by {detail.pop('by')}"] if "by" in detail else []
    error = detail.pop("error", None)
    parts += [f"{k} {v if isinstance(v, str) else json.dumps(v)}" for k, v in detail.items()]
    if isinstance(error, dict):
        message = str(error.get("message") or "").strip().splitlines()
        parts.append(f"error {error.get('type')}: {message[0] if message else ''}".rstrip(": "))
    return (
        f"{event['at']}  {event['status']:<9}  attempt {event['attempt']}  "
        f"{event['worker'] or '-'}  {'  '.join(parts)}"
    ).rstrip()


@click.command(short_help="Run a failed or canceled job again.")
@click.argument("job_id")
@click.option("--wait", "wait_", is_flag=True, help="wait for the new attempt's final state")
@url_option
@key_option
def retry(job_id: str, wait_: bool, url: str, key: str | None) -> None:
    """Run the failed or canceled job JOB_ID again (a new attempt); prints the job."""
    with connect(url, key) as jobs:
        _show(jobs, jobs.retry(job_id), wait_)


@click.command(short_help="Cancel a job.")
@click.argument("job_id")
@url_option
@key_option
def cancel(job_id: str, url: str, key: str | None) -> None:
    """Cancel the job JOB_ID; prints the job and what the cancel did."""
    with connect(url, key) as jobs:
        echo_json(jobs.cancel(job_id))


@click.command(short_help="The tasks and their args.")
@click.argument("name", required=False)
@json_option
@url_option
@key_option
def tasks(name: str | None, as_json: bool, url: str, key: str | None) -> None:
    """The tasks you can submit: each one's queue, limits, description and args; with
    NAME, that task with its whole args JSON schema."""
    with connect(url, key) as jobs:
        found = jobs.tasks()
    if name is not None:
        chosen = [t for t in found if t["name"] == name]
        if not chosen:
            fail(f"unknown task {name!r}; known tasks: {', '.join(t['name'] for t in found)}")
        echo_json(chosen[0])
    elif as_json:
        echo_json(found)
    else:
        echo_lines((line for t in found for line in _task_lines(t)), "no tasks")


def _task_lines(task: dict[str, Any]) -> list[str]:
    about = " ".join((task["description"] or "").split("\n\n")[0].split())
    attempts = task["max_attempts"]
    schema = task["args_schema"]
    required = set(schema.get("required", []))
    args = [
        f"{arg}: {_type(spec)}" if arg in required else f"{arg}: {_type(spec)}{_default(spec)}"
        for arg, spec in schema.get("properties", {}).items()
    ]
    return [
        f"{task['name']}  (queue {task['queue']}, timeout {task['timeout_s']} s, "
        f"{attempts} attempt{'s' if attempts != 1 else ''})  {_cut(about, 100)}".rstrip(),
        f"    args: {', '.join(args) or 'none'}",
    ]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _type(spec: dict[str, Any]) -> str:
    """A JSON schema's type, short: `string`, `list[integer]`, `string | null`."""
    if "anyOf" in spec:
        return " | ".join(_type(s) for s in spec["anyOf"])
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "enum" in spec:
        return " | ".join(json.dumps(v) for v in spec["enum"])
    if spec.get("type") == "array":
        return f"list[{_type(spec.get('items', {}))}]"
    return str(spec.get("type", "any"))


def _default(spec: dict[str, Any]) -> str:
    return f" = {json.dumps(spec['default'])}" if "default" in spec else " (optional)"


COMMANDS = [submit, batch, status, list_jobs, events, cancel, retry, tasks]
COMMANDS += client_cli_manage.COMMANDS
