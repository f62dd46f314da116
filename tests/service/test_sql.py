"""The named statements: each one is valid SQL on the migrated schema (asyncpg prepares
the numbered form, which is what psycopg makes of the named one too), and the job-event
wrapper goes exactly where a block asks for it."""

import asyncpg
import pytest

from service import sql


def _statements() -> dict[str, sql.Query]:
    return {
        name: q.formatted(filters="true") if "{filters}" in q.text else q
        for name, q in sql.queries().items()
    }


async def test_every_statement_prepares(database: str) -> None:
    conn = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
    try:
        for name, q in _statements().items():
            try:
                await conn.prepare(q.numbered)
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{name}: {exc}")
    finally:
        await conn.close()


def test_a_repeated_parameter_is_one_number() -> None:
    q = sql.Query.of("t", "SELECT %(a)s, %(b)s WHERE %(a)s::text IS NULL")
    assert q.numbered == "SELECT $1, $2 WHERE $1::text IS NULL"
    assert q.values({"b": 2, "a": 1}) == [1, 2]


def test_only_transitions_append_an_event() -> None:
    appending = {name for name, q in sql.queries().items() if "INSERT INTO job_events" in q.text}
    assert appending == {
        "insert_jobs", "cancel", "retry", "claim", "finish", "fail", "retry_later", "note",
        "rescue_expired", "release_due", "mark_redelivered", "bulk_cancel", "bulk_retry", "hold",
        "hold_paused", "release_paused", "hold_paused_for_key", "release_held",
        "defer_throttled", "throttle_later",
    }  # fmt: skip
