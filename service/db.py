"""Database engines: the API's pooled async engine (made in the lifespan), the worker's
sync one, and database creation."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service.settings import Settings


def create_api_engine(settings: Settings) -> AsyncEngine:
    """The API's asyncpg pool; one per process, created in the app lifespan."""
    return create_async_engine(
        str(settings.database_url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,
        pool_timeout=settings.db_connect_timeout_s,
        connect_args={"timeout": settings.db_connect_timeout_s},
    )


def create_worker_engine(settings: Settings) -> Engine:
    """A small psycopg 3 pool for a worker process (RQ is synchronous)."""
    return create_engine(
        settings.sync_database_url,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": int(settings.db_connect_timeout_s)},
    )


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for one request; what the route did not commit is rolled back."""
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(get_connection)]


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
