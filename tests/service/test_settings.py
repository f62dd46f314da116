"""Settings read from the environment."""

import pytest

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
