"""compose.yaml: the stack it describes is complete and wired in the right order."""

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "compose.yaml"
APP_SERVICES = ("migrate", "api", "worker", "reconciler", "dashboard")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_every_part_of_the_stack_is_there() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    for name in ("postgres", "redis", "api"):
        assert services[name]["healthcheck"]["test"], name


def test_redis_persists_and_never_evicts() -> None:
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_processes_start_only_after_migrations_complete() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )


def test_configuration_is_database_url_and_redis_url() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_authentication_stays_on_and_the_dashboard_needs_a_password() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        assert "JOBS_DEV_MODE" not in services[name]["environment"], name
    dashboard = services["dashboard"]["environment"]
    assert dashboard["JOBS_DASHBOARD_PASSWORD"].startswith("${JOBS_DASHBOARD_PASSWORD:?")


def test_api_worker_and_reconciler_share_a_metrics_directory() -> None:
    services = compose()["services"]
    for name in ("api", "worker", "reconciler"):
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/data/metrics"
        assert "metrics:/data/metrics" in services[name]["volumes"]


def test_api_and_worker_share_the_artifacts_volume() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        assert "artifacts:/data/artifacts" in services[name]["volumes"]
        assert services[name]["environment"]["JOBS_ARTIFACTS_DIR"] == "/data/artifacts"
