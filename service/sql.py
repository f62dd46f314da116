"""The named statements of `queries.sql`, and the two ways they run.

The API runs them on the asyncpg connection under a pooled SQLAlchemy `AsyncConnection`
(prepared once per connection, no transaction unless the caller opens one); the reconciler,
the CLI and tasks run them on psycopg through a SQLAlchemy `Connection`, and a worker's own
bookkeeping on a plain psycopg connection that it holds (`ledger_writer`: a claim and an
outcome per job, without a pool checkout or a result wrapper each). psycopg prepares a
statement after a few runs. Either way a statement is its text, as written in
`queries.sql`, and its parameters by name.
"""

import functools
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from service import db

# A row as a driver returns it (an asyncpg Record, a SQLAlchemy RowMapping): read by
# column name. `ledger` turns each into a typed row at once.
Record = Mapping[str, Any]

# What the synchronous statements run on: SQLAlchemy's connection, or a worker's own psycopg
# connection (autocommit).
SyncConnection = Connection | psycopg.Connection[Any]

_PARAM = re.compile(r"%\((\w+)\)s")

# The one statement that appends to `job_events`: every job that `changed` returns gets its
# event (see the head of queries.sql; architecture.md, "Every transition is history").
_WITH_EVENT = (
    "WITH changed AS ({body}),"
    " event AS (INSERT INTO job_events (job_id, status, attempt, worker, detail)"
    " SELECT id, status, attempt, worker, %(detail)s::jsonb FROM changed)"
    " SELECT * FROM changed"
)


@dataclass(frozen=True)
class Query:
    name: str
    text: str  # %(name)s placeholders (psycopg)
    numbered: str  # $n placeholders (asyncpg)
    params: tuple[str, ...]  # the name of $1, $2, ...

    @classmethod
    def of(cls, name: str, text: str) -> "Query":
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in order:
                order.append(match[1])
            return f"${order.index(match[1]) + 1}"

        return cls(name, text, _PARAM.sub(number, text), tuple(order))

    def formatted(self, **parts: str) -> "Query":
        """The statement with its `{part}`s filled in (see `list_jobs`)."""
        return Query.of(self.name, self.text.format(**parts))

    def values(self, params: Mapping[str, object]) -> list[object]:
        return [params[name] for name in self.params]


def _parse(source: str) -> dict[str, Query]:
    queries: dict[str, Query] = {}
    for block in re.split(r"^-- name: ", source, flags=re.M)[1:]:
        name, _, rest = block.partition("\n")
        lines = rest.splitlines()
        with_event = "-- appends: event" in lines
        body = "\n".join(line for line in lines if not line.lstrip().startswith("--")).strip()
        queries[name.strip()] = Query.of(
            name.strip(), _WITH_EVENT.format(body=body) if with_event else body
        )
    return queries


@functools.cache
def queries() -> dict[str, Query]:
    """Every named statement (read once, on first use)."""
    return _parse(resources.files("service").joinpath("queries.sql").read_text())


def query(name: str) -> Query:
    return queries()[name]


# ---------------------------------------------------------------- asyncpg (the API)


@asynccontextmanager
async def _driver(conn: AsyncConnection) -> AsyncIterator[Any]:
    """The asyncpg connection under `conn`. SQLAlchemy does not see what fails on it, so a
    connection that drops is invalidated here: the pool then replaces it instead of
    handing the dead one out again (after a PostgreSQL restart, say)."""
    found = (await conn.get_raw_connection()).driver_connection
    assert found is not None
    try:
        yield found
    except BaseException as exc:
        if db.transient(exc) and not conn.invalidated:
            await conn.invalidate()
        raise


async def fetch(conn: AsyncConnection, q: Query, **params: object) -> list[Record]:
    async with _driver(conn) as driver:
        rows: list[Record] = await driver.fetch(q.numbered, *q.values(params))
    return rows


async def fetch_one(conn: AsyncConnection, q: Query, **params: object) -> Record | None:
    async with _driver(conn) as driver:
        row: Record | None = await driver.fetchrow(q.numbered, *q.values(params))
    return row


async def execute(conn: AsyncConnection, q: Query, **params: object) -> None:
    async with _driver(conn) as driver:
        await driver.execute(q.numbered, *q.values(params))


@asynccontextmanager
async def transaction(conn: AsyncConnection) -> AsyncIterator[None]:
    """One transaction around the statements run inside (all or nothing)."""
    async with _driver(conn) as driver, driver.transaction():
        yield


@asynccontextmanager
async def snapshot(conn: AsyncConnection) -> AsyncIterator[None]:
    """The reads inside see the database as of one moment (a read-only REPEATABLE READ
    transaction), for reads that must agree with each other."""
    async with (
        _driver(conn) as driver,
        driver.transaction(isolation="repeatable_read", readonly=True),
    ):
        yield


# ---------------------------------------------------------------- psycopg (the rest)


def rows(conn: SyncConnection, q: Query, **params: object) -> Sequence[Record]:
    if isinstance(conn, psycopg.Connection):
        with conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(q.text, params)
            return cursor.fetchall() if cursor.description else []
    found: Sequence[Record] = conn.exec_driver_sql(q.text, params).mappings().all()  # type: ignore[assignment]
    return found


def one(conn: SyncConnection, q: Query, **params: object) -> Record | None:
    found = rows(conn, q, **params)
    return found[0] if found else None


def run(conn: SyncConnection, q: Query, **params: object) -> int:
    """Run a statement for its effect; the number of rows it touched."""
    if isinstance(conn, psycopg.Connection):
        return conn.execute(q.text, params).rowcount
    return int(conn.exec_driver_sql(q.text, params).rowcount)
