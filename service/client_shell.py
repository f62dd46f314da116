"""What the shell commands share: the API's address and key, one client, JSON in and out,
lists that say when they are empty, and the API's refusals as readable lines.

Nothing here imports httpx or the engine until a command runs: `jobsvc --help` and a
command's `--help` load click alone.
"""

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from service.client import JobsClient

url_option = click.option(
    "--url",
    envvar="JOBS_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="the API [JOBS_URL]",
)
key_option = click.option("--key", envvar="JOBS_API_KEY", default=None, help="[JOBS_API_KEY]")
json_option = click.option("--json", "as_json", is_flag=True, help="print the API's JSON")

# GET /jobs' statuses (service.tables.Status), spelled out so a command's help needs no engine
STATUSES = ("waiting", "queued", "scheduled", "started", "finished", "failed", "canceled")


@contextmanager
def connect(url: str, key: str | None) -> Iterator["JobsClient"]:
    """A client of the API for one command; its errors end the command with status 2 and
    readable lines on stderr."""
    # httpx loads its own command line (rich, pygments: a third of its import time) when
    # it can; without it, httpx is whole and a command starts ~0.1 s sooner.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from service.client import JobsClient

    with api_errors(), JobsClient(url, key) as jobs:
        yield jobs


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn API errors into readable lines on stderr and exit status 2."""
    try:
        yield
    except Exception as exc:
        import httpx

        from service.client import JobsError

        if isinstance(exc, JobsError):
            fail(*problem_lines(exc.status_code, exc.detail))
        if isinstance(exc, httpx.HTTPError):
            fail(f"cannot reach the API: {exc}")
        raise


def fail(*lines: str) -> None:
    """Print `jobsvc: <first line>` and the rest indented on stderr; exit status 2."""
    first, *rest = lines
    click.echo(f"jobsvc: {first}", err=True)
    for line in rest:
        click.echo(f"  {line}", err=True)
    sys.exit(2)


def problem_lines(status_code: int, detail: Any) -> list[str]:
    """An error answer as lines: a message as one; a list of refused fields (FastAPI's 422,
    a batch's refused jobs) as `field: message` lines under a heading."""
    if isinstance(detail, list) and detail:
        lines = [line for item in detail for line in _field_lines(item, "")]
        return [f"the API answered {status_code}: the request is not valid:", *lines]
    text = "" if detail is None else detail if isinstance(detail, str) else json.dumps(detail)
    first = text.strip().splitlines()[0] if text.strip() else "(no message)"
    return [f"the API answered {status_code}: {first[:500]}"]


def _field_lines(item: Any, prefix: str) -> list[str]:
    if isinstance(item, dict) and "msg" in item:
        field = prefix + _field(item.get("loc") or [])
        return [f"{field or 'body'}: {item['msg']}"]
    if isinstance(item, dict) and ("index" in item or "on_complete" in item):
        where = f"{prefix}jobs[{item['index']}]" if "index" in item else f"{prefix}on_complete"
        detail = item.get("detail")
        if isinstance(detail, list):
            return [line for sub in detail for line in _field_lines(sub, where + ".")]
        return [f"{where}: {detail}"]
    return [prefix.rstrip(".") + ": " + (item if isinstance(item, str) else json.dumps(item))]


def _field(loc: list[Any]) -> str:
    """`["body", "jobs", 0, "args", "to"]` as `jobs[0].args.to`: where the field is, not
    which part of the request held it."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def echo_lines(lines: Iterable[str], empty: str) -> None:
    """Each line, or `empty` when there is none: an empty list says so."""
    shown = False
    for line in lines:
        click.echo(line)
        shown = True
    if not shown:
        click.echo(empty)


def json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return value
