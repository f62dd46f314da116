"""Listing jobs: the filters `GET /jobs` takes, newest first, in pages with opaque cursors.

One statement (`list_jobs` in `queries.sql`) takes whichever conditions the filters ask
for; each combination is numbered for asyncpg once and kept. Bulk operations
(`service.bulk`) narrow their statements by the same filters (`query`).
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from service import errors, sql
from service.rows import JobRow
from service.tables import Status


@dataclass(frozen=True)
class ListFilter:
    owner: str | None  # None: every owner's jobs (an admin)
    status: Status | None = None
    task: str | None = None
    queue: str | None = None
    parent: UUID | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


# The conditions `list_jobs` may add to its statement, by the filter that asks for each.
LIST_FILTERS = {
    "owner": "owner = %(owner)s",
    "status": "status = %(status)s",
    "task": "task = %(task)s",
    "queue": "queue = %(queue)s",
    "parent": "depends_on @> ARRAY[%(parent)s::uuid] AND depends_on IS NOT NULL",
    "created_after": "created_at > %(created_after)s",
    "created_before": "created_at < %(created_before)s",
    "cursor": "(created_at, id) < (%(cursor_at)s, %(cursor_id)s)",
}


async def list_jobs(
    conn: AsyncConnection, where: ListFilter, limit: int, cursor: str | None
) -> tuple[list[JobRow], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None on the last)."""
    filters, given = conditions(where)
    if cursor is not None:
        given["cursor_at"], given["cursor_id"] = _decode_cursor(cursor)
        filters += " AND " + LIST_FILTERS["cursor"]
    q = _query("list_jobs", filters)
    params = {name: given.get(name) for name in q.params if name != "limit"}
    found = [JobRow.of(r) for r in await sql.fetch(conn, q, limit=limit + 1, **params)]
    if len(found) <= limit:
        return found, None
    last = found[limit - 1]
    return found[:limit], _encode_cursor(last.created_at, last.id)


def conditions(where: ListFilter) -> tuple[str, dict[str, object]]:
    """The SQL condition the filters ask for, and its parameters."""
    given: dict[str, object] = {
        name: str(value) if isinstance(value, Status) else value
        for name, value in vars(where).items()
        if value is not None
    }
    chosen = [sql_text for name, sql_text in LIST_FILTERS.items() if name in given]
    return " AND ".join(chosen) or "true", given


_queries: dict[tuple[str, str], sql.Query] = {}


def _query(name: str, filters: str) -> sql.Query:
    """Statement `name` with `{filters}` filled: numbered once, kept."""
    if (name, filters) not in _queries:
        _queries[(name, filters)] = sql.query(name).formatted(filters=filters)
    return _queries[(name, filters)]


def query(name: str, where: ListFilter) -> tuple[sql.Query, dict[str, object]]:
    """Statement `name` narrowed by `where` (its `{filters}`), and its parameters."""
    filters, given = conditions(where)
    q = _query(name, filters)
    return q, {p: given[p] for p in q.params if p in given}


def _encode_cursor(created_at: datetime, job_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(job_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return datetime.fromisoformat(created_at), UUID(job_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise errors.CursorInvalid() from exc
