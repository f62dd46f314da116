"""Settings read from the environment."""

import re

import pytest

from service import dashboard
from service.settings import Settings


def test_task_modules_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TASK_MODULES", "jobs.builtin, myapp.tasks")
    assert Settings().task_modules == ["jobs.builtin", "myapp.tasks"]


def test_worker_url_uses_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:p@db.internal:5433/ledger")
    assert Settings().sync_database_url == "postgresql+psycopg://u:p@db.internal:5433/ledger"


def test_bad_local_servers_mode_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_LOCAL_SERVERS", "sometimes")
    with pytest.raises(ValueError, match="auto\\|always\\|never"):
        Settings()


def test_transaction_pooling_asks_for_a_direct_listen_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@bouncer:6432/ledger")
    monkeypatch.setenv("JOBS_DB_TRANSACTION_POOLING", "true")
    with pytest.raises(ValueError, match="set JOBS_LISTEN_DATABASE_URL"):
        _ = Settings().listen_url
    monkeypatch.setenv("JOBS_LISTEN_DATABASE_URL", "postgresql://u@db:5432/ledger")
    assert Settings().listen_url == "postgresql://u@db:5432/ledger"
    monkeypatch.delenv("JOBS_DB_TRANSACTION_POOLING")
    monkeypatch.delenv("JOBS_LISTEN_DATABASE_URL")
    assert Settings().listen_url == "postgresql+asyncpg://u@bouncer:6432/ledger"


def test_sentinels_are_host_port_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.5:26379, sentinel-b:26380,[::1]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "jobsvc")
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@unused/3")
    settings = Settings()
    assert settings.sentinels == [("10.0.0.5", 26379), ("sentinel-b", 26380), ("::1", 26381)]
    assert dashboard.redis_url(settings) == (
        "redis+sentinel://:s3cret@10.0.0.5:26379,sentinel-b:26380,[::1]:26381/jobsvc/3"
    )
    monkeypatch.setenv("REDIS_SENTINELS", "10.0.0.5")
    with pytest.raises(ValueError, match=re.escape("'10.0.0.5' is not host:port")):
        Settings()
