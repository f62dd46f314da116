"""Test session set-up: a test database of its own (created and migrated once), a Redis
database number of its own (held for the run: `claim_redis_db`), and a clean ledger and
Redis around every test.

The servers are the machine's (DATABASE_URL/REDIS_URL, else 127.0.0.1 defaults); where
nothing answers, project-local ones are started, as `jobsvc run` does.
"""

import os
import tempfile
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis import Redis
from sqlalchemy import Engine, create_engine, make_url, text

from service import localservers
from service.settings import Settings
from tests.support import (
    LEDGER_TABLES,
    RUN_ID,
    Ledger,
    api_client,
    claim_redis_db,
    create_fresh_database,
    drop_database,
    make_key,
    migrate,
)

TEST_DATABASE = os.environ.get("JOBS_TEST_DATABASE", f"jobsvc_test_{RUN_ID}")


_REDIS_HOLD: list[object] = []  # the connection that holds this run's Redis db number


def _point_at_test_servers() -> localservers.Started:
    """Point DATABASE_URL/REDIS_URL at the test database and Redis db before anything reads them."""
    started = localservers.ensure(Settings(), database=TEST_DATABASE)
    os.environ.update(started.env)
    base = Settings()
    db_url = make_url(str(base.database_url)).set(database=TEST_DATABASE)
    os.environ["DATABASE_URL"] = db_url.render_as_string(hide_password=False)
    redis_db = os.environ.get("JOBS_TEST_REDIS_DB")
    if redis_db is None:
        db, holder = claim_redis_db(str(base.redis_url))
        _REDIS_HOLD.append(holder)
        redis_db = str(db)
    redis_url = make_url(str(base.redis_url)).set(database=redis_db)
    os.environ["REDIS_URL"] = redis_url.render_as_string(hide_password=False)
    os.environ["JOBS_LOCAL_SERVERS"] = "never"  # child processes use exactly these URLs
    os.environ["JOBS_RATE_LIMIT"] = "false"  # the rate limit's own tests turn it on
    os.environ["JOBS_ARTIFACTS_DIR"] = tempfile.mkdtemp(prefix="jobsvc-test-files-")
    return started


_STARTED = _point_at_test_servers()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _STARTED.stop()


def _weight(item: pytest.Item) -> int:
    """Longest first: slow tests, fault tests, then the rest that start processes, then
    the in-process tests, which fill the gaps at the end of a run on several cores."""
    for weight, marker in enumerate(("slow", "fault", "e2e")):
        if item.get_closest_marker(marker):
            return weight
    return 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort by the heaviest test of each file keeps a file's tests together and in
    # their order (`make test` hands whole files to each process: --dist loadfile).
    by_file: dict[str, int] = {}
    for item in items:
        by_file[item.path.as_posix()] = min(by_file.get(item.path.as_posix(), 3), _weight(item))
    items.sort(key=lambda item: by_file[item.path.as_posix()])


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def database(settings: Settings) -> Iterator[str]:
    url = create_fresh_database(settings, TEST_DATABASE)
    migrate(url)
    yield url
    drop_database(settings, TEST_DATABASE)


@pytest.fixture(scope="session")
def sql_engine(settings: Settings, database: str) -> Iterator[Engine]:
    engine = create_engine(settings.sync_database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_conn(settings: Settings) -> Iterator[Redis]:
    conn = Redis.from_url(str(settings.redis_url))
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture(autouse=True)
def clean_state(sql_engine: Engine, redis_conn: Redis) -> None:
    """Every test starts with an empty ledger and an empty Redis db."""
    with sql_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {LEDGER_TABLES}"))
    redis_conn.flushdb()


@pytest.fixture
def test_tasks(settings: Settings) -> Iterator[None]:
    """Register the tasks of `tests.tasks` for one test, beside the configured ones."""
    import importlib
    import sys

    from service import registry

    registry.load(settings.task_modules)  # registered once a process: keep them after
    before = dict(registry._tasks)
    sys.modules.pop("tests.tasks", None)
    importlib.import_module("tests.tasks")
    yield
    registry._tasks.clear()
    registry._tasks.update(before)


@pytest.fixture
def ledger_rows(sql_engine: Engine) -> Ledger:
    return Ledger(sql_engine)


@pytest.fixture
def api_key(sql_engine: Engine) -> str:
    """A live key of a non-admin client named "tester"."""
    return make_key(sql_engine, "tester")


@pytest.fixture
async def client(settings: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process, lifespan included, through httpx, as client "tester"."""
    async with api_client(settings, api_key) as c:
        yield c
