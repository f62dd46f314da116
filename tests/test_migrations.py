"""The schema comes only from migrations, and they go both ways."""

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, make_url

from service.settings import Settings
from service.tables import metadata
from tests.support import RUN_ID, create_fresh_database, drop_database, migrate

NAME = f"jobsvc_test_migrations_{RUN_ID}"


@pytest.fixture
def empty_database(settings: Settings) -> Iterator[str]:
    yield create_fresh_database(settings, NAME)
    drop_database(settings, NAME)


def _tables(async_url: str) -> set[str]:
    engine = create_engine(make_url(async_url).set(drivername="postgresql+psycopg"))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    migrate(empty_database)
    assert {"jobs", "job_events", "api_keys", "alembic_version"} <= _tables(empty_database)

    migrate(empty_database, "base", down=True)
    assert _tables(empty_database) == {"alembic_version"}

    migrate(empty_database)
    assert {"jobs", "job_events"} <= _tables(empty_database)


def test_models_match_migrated_schema(empty_database: str) -> None:
    migrate(empty_database)
    engine = create_engine(make_url(empty_database).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_migrated_schema_has_the_documented_indexes(empty_database: str) -> None:
    migrate(empty_database)
    engine = create_engine(make_url(empty_database).set(drivername="postgresql+psycopg"))
    try:
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("jobs")}
    finally:
        engine.dispose()
    assert {
        "ix_jobs_owner_created",
        "ix_jobs_owner_status_created",
        "ix_jobs_owner_task_created",
        "ix_jobs_lease",
        "ix_jobs_due",
        "ix_jobs_queued",
        "uq_jobs_owner_idempotency_key",
    } <= set(indexes)
    assert indexes["uq_jobs_owner_idempotency_key"]["unique"]
