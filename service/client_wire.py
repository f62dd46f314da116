"""What both clients send and read: request bodies, errors, long-poll slices, Server-Sent
Events, schedule names.

Light to import (httpx only for type checking): the shell commands take `FINAL` from here
before any request is made.
"""

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

FINAL = frozenset({"finished", "failed", "canceled"})
LONG_POLL_S = 60.0  # the most the API holds one request
UUID_TEXT = re.compile(r"[0-9a-f]{8}-?(?:[0-9a-f]{4}-?){3}[0-9a-f]{12}", re.IGNORECASE)


class JobsError(Exception):
    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class WaitTimeout(TimeoutError):
    """The job was not final within the time `wait` was given; `job` is its last state."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} is still {job['status']}")
        self.job = job


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def submit_body(task: str, args: dict[str, Any] | None, options: dict[str, Any]) -> Any:
    return {"task": task, "args": args or {}, **options}


def batch_body(jobs: list[dict[str, Any]], on_complete: dict[str, Any] | None) -> Any:
    return {"jobs": jobs, **({"on_complete": on_complete} if on_complete else {})}


def schedule_body(
    name: str, cron: str, task: str, args: dict[str, Any] | None, fields: dict[str, Any]
) -> Any:
    return {"name": name, "cron": cron, "task": task, "args": args or {}, **fields}


def bulk_body(filters: dict[str, Any]) -> Any:
    """Datetimes as ISO text; the other filters as they are."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}


def schedule_named(listed: list[dict[str, Any]], name: str) -> str:
    """The id of the one schedule called `name` among `listed`; a JobsError otherwise."""
    found = [s for s in listed if s["name"] == name]
    if len(found) == 1:
        return str(found[0]["id"])
    if found:  # an admin sees every client's schedules, and names are unique per client
        owners = ", ".join(sorted(str(s.get("owner")) for s in found))
        raise JobsError(409, f"schedules of {owners} are named {name!r}: give the id")
    names = ", ".join(sorted(s["name"] for s in listed)) or "none"
    raise JobsError(404, f"no schedule named {name!r} (your schedules: {names})")


def key_header(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def result(response: "httpx.Response") -> Any:
    """The answer's JSON (None for a 204); a JobsError for an error answer."""
    if response.status_code >= 400:
        raise JobsError(response.status_code, _detail(response))
    return None if response.status_code == 204 else response.json()


def _detail(response: "httpx.Response") -> Any:
    """The API's `detail`; where the body has none (a proxy's page, JSON of another shape),
    the body's text, trimmed."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return response.text.strip() if detail is None else detail


def one(response: "httpx.Response") -> dict[str, Any]:
    """An answer that is one object."""
    found: dict[str, Any] = result(response)
    return found


def many(response: "httpx.Response") -> list[dict[str, Any]]:
    """An answer that is a list of objects."""
    found: list[dict[str, Any]] = result(response)
    return found


def poll_slice(remaining: float | None) -> float:
    return LONG_POLL_S if remaining is None else max(0.0, min(LONG_POLL_S, remaining))


class Events:
    """Server-Sent Events, line by line: `feed` returns (event, data) when one is complete."""

    def __init__(self) -> None:
        self.name, self.data = "", ""

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line.startswith("event: "):
            self.name = line[len("event: ") :]
        elif line.startswith("data: "):
            self.data = line[len("data: ") :]
        elif line == "" and self.name:
            event, self.name = (self.name, json.loads(self.data)), ""
            return event
        return None
