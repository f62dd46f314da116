"""Database engines: the API's pooled async engine (made in the lifespan), the synchronous
processes' psycopg one, database creation, and which database errors are outages."""

from typing import Any
from uuid import uuid4

import asyncpg
import psycopg
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.settings import Settings


def create_api_engine(settings: Settings) -> AsyncEngine:
    """The API's asyncpg pool; one per process, created in the app lifespan."""
    return create_async_engine(
        str(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        pool_timeout=settings.db_connect_timeout_s,
        connect_args=asyncpg_args(settings, "api"),
    )


def asyncpg_args(settings: Settings, role: str) -> dict[str, Any]:
    """How an asyncpg connection under SQLAlchemy connects (the API, migrations). Behind a
    pooler in transaction mode, asyncpg prepares each statement unnamed, in the round trip
    that runs it, and SQLAlchemy's own statements get names no other connection uses."""
    args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_s,
        "server_settings": {"application_name": f"jobsvc-{role}"},
    }
    if settings.db_transaction_pooling:
        args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    return args


def _unique_statement_name() -> str:
    return f"__jobsvc_{uuid4().hex}__"


def psycopg_args(settings: Settings, role: str) -> dict[str, Any]:
    """How a synchronous process connects with psycopg 3; `role` names it in
    `pg_stat_activity` (`application_name` `jobsvc-<role>`). Behind a pooler in transaction
    mode, no statement is prepared on the server (psycopg would after five runs)."""
    args: dict[str, Any] = {
        "connect_timeout": max(1, int(settings.db_connect_timeout_s)),
        "application_name": f"jobsvc-{role}",
    }
    if settings.db_transaction_pooling:
        args["prepare_threshold"] = None
    return args


def create_worker_engine(settings: Settings, role: str = "cli") -> Engine:
    """A small psycopg 3 pool for a synchronous process (the reconciler, the CLI, a
    worker's tasks)."""
    return create_engine(
        settings.sync_database_url,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args=psycopg_args(settings, role),
    )


def create_database(settings: Settings) -> bool:
    """Create the database named in DATABASE_URL if it is missing; True if it was created."""
    url = make_url(settings.sync_database_url)
    name = url.database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    admin = create_engine(
        url.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": int(settings.db_connect_timeout_s)},
    )
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def redacted(url: str) -> str:
    """A database or Redis URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


# asyncpg's own errors (the API runs statements on its connections) that mean the server
# or the connection is away: refused, dropped, shutting down, restarting, or a connection
# left in a broken protocol state by a backend that was terminated under it.
ASYNCPG_OUTAGES = (
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


# What a synchronous statement raises: SQLAlchemy's wrapped errors, or psycopg's own from a
# worker's held connection (`ledger_writer`).
SYNC_ERRORS = (DBAPIError, psycopg.Error)


def transient(exc: BaseException) -> bool:
    """True if `exc` means the database is unreachable for now (retry later), not a bug:
    a lost or refused connection, or no pooled connection free in time."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    if isinstance(exc, psycopg.Error):  # a worker's own connection (`ledger_writer`)
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return isinstance(exc, (*ASYNCPG_OUTAGES, OSError, TimeoutError))


def cause(exc: BaseException) -> BaseException:
    """The driver's error under SQLAlchemy's wrapper, for logs and messages."""
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
