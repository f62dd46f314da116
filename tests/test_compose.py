"""compose.yaml, compose.ha.yaml and the Dockerfile: the stack they describe is complete,
wired in the right order, and works with no variable set."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url

from service import registry
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
COMPOSE_HA = ROOT / "compose.ha.yaml"
APP_SERVICES = ("migrate", "api", "worker", "reconciler", "dashboard")
POOLED = ("api", "worker", "reconciler")  # through PgBouncer
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
PROFILES = {
    "dashboard": {"dashboard"},
    "mail": {"mailpit"},
    "ha": {"redis-replica", *SENTINELS},
}

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def compose_ha() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_HA.read_text())
    return data


def interpolate(value: Any, variables: dict[str, str] | None = None) -> Any:
    """A value as compose reads it with these variables set (none by default); a required
    variable (`${…:?}`) is refused."""
    given = variables or {}
    if isinstance(value, dict):
        return {k: interpolate(v, given) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, given) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(found: re.Match[str]) -> str:
        assert "?" not in (found["op"] or ""), f"{found[0]} is required"
        name, op = found["name"], found["op"] or ""
        if given.get(name) or (name in given and not op.startswith(":")):
            return given[name]
        return found["arg"] if op in (":-", "-") else ""

    return VARIABLE.sub(substitute, value)


def environment(
    service: str, *, ha: bool = False, variables: dict[str, str] | None = None
) -> dict[str, str]:
    """A service's environment as compose gives it (no variable set unless `variables`),
    under compose.ha.yaml if `ha`."""
    env = dict(compose()["services"][service].get("environment", {}))
    if ha:
        env |= compose_ha()["services"].get(service, {}).get("environment", {})
    return {k: str(v) for k, v in interpolate(env, variables).items()}


def settings_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process with this environment reads."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def seconds(duration: str) -> float:
    """A compose duration (`1h3m`, `90s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_every_part_of_the_stack_is_there() -> None:
    services = compose()["services"]
    assert set(services) == {
        "postgres", "pgbouncer", "redis", *APP_SERVICES, *set().union(*PROFILES.values())
    }  # fmt: skip
    for name in ("postgres", "pgbouncer", "redis", "api", "redis-replica", *SENTINELS):
        assert services[name]["healthcheck"]["test"], name


def test_optional_parts_are_profiles_and_the_rest_starts_without_them() -> None:
    services = compose()["services"]
    for profile, members in PROFILES.items():
        assert {n for n, s in services.items() if profile in s.get("profiles", [])} == members
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"postgres", "pgbouncer", "redis", "migrate", "api", "worker", "reconciler"}
    for name in default:
        assert set(services[name].get("depends_on", {})) <= default, name


def strings(value: Any) -> list[str]:
    """Every string in a parsed file (what compose interpolates; comments are not)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("read", [compose, compose_ha], ids=["compose.yaml", "compose.ha.yaml"])
def test_no_variable_is_required(read: Any) -> None:
    """Compose reads every `${…}` of a file before it looks at profiles, so one required
    variable, in any service, stops every command while it is unset."""
    for text in strings(read()):
        variables = VARIABLE.findall(text)
        assert all(op in (":-", "-") for _, op, _ in variables), text
        assert "$" not in VARIABLE.sub("", text).replace("$$", ""), f"a stray $: {text}"


def test_redis_persists_and_never_evicts() -> None:
    services = compose()["services"]
    for name in ("redis", "redis-replica"):
        command = services[name]["command"]
        assert command[command.index("--appendonly") + 1] == "yes"
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_processes_start_only_after_migrations_and_pgbouncer() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["pgbouncer"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in POOLED:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["pgbouncer"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_api_workers_and_reconciler_go_through_pgbouncer_in_transaction_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    bouncer = interpolate(services["pgbouncer"]["environment"])
    assert bouncer["POOL_MODE"] == "transaction"
    server = make_url(bouncer["DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert (server.host, server.port or 5432) == ("postgres", 5432)
    assert (server.database, server.password) == (postgres["POSTGRES_DB"], "postgres")
    assert server.password == postgres["POSTGRES_PASSWORD"]
    for name in POOLED:
        settings = settings_of(environment(name), monkeypatch)
        pooled = make_url(str(settings.database_url))
        assert (pooled.host, pooled.port) == ("pgbouncer", int(bouncer["LISTEN_PORT"])), name
        assert pooled.database == server.database, name
        assert settings.db_transaction_pooling, name
        listen = make_url(settings.listen_url)  # LISTEN needs a session: PostgreSQL itself
        assert (listen.host, listen.port, listen.database) == ("postgres", 5432, "jobsvc")


def test_migrations_go_to_postgresql_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_of(environment("migrate"), monkeypatch)
    url = make_url(str(settings.database_url))
    assert (url.host, url.port, url.database) == ("postgres", 5432, "jobsvc")
    assert url.drivername == "postgresql+asyncpg"


def test_every_setting_given_is_one_the_service_reads() -> None:
    """A misspelt JOBS_ variable would be ignored without a word."""
    fields = set(Settings.model_fields)
    unprefixed = {"DATABASE_URL", "REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"}
    for name in APP_SERVICES:
        for ha in (False, True):
            for key in environment(name, ha=ha):
                if key.startswith("JOBS_"):
                    assert key.removeprefix("JOBS_").lower() in fields, key
                else:
                    assert key in unprefixed | {"PROMETHEUS_MULTIPROC_DIR"}, key


def test_authentication_stays_on_and_the_dashboard_needs_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        assert "JOBS_DEV_MODE" not in services[name]["environment"], name
    raw = services["dashboard"]["environment"]["JOBS_DASHBOARD_PASSWORD"]
    assert VARIABLE.fullmatch(raw)["name"] == "JOBS_DASHBOARD_PASSWORD"
    # unset, it is empty: `jobsvc dashboard` refuses to start (a profile's service only)
    settings = settings_of(environment("dashboard"), monkeypatch)
    assert not settings.dashboard_password
    assert not settings.dev_mode


def test_workers_are_replicas_stopped_warm_after_their_longest_job() -> None:
    worker = compose()["services"]["worker"]
    assert int(interpolate(worker["deploy"]["replicas"])) >= 2
    assert worker["stop_signal"] == "SIGTERM"  # RQ's warm shutdown: the job in hand ends
    assert worker["init"] is True  # which passes it to `jobsvc worker`, and reaps
    defaults = Settings()
    registry.load(defaults.task_modules)
    modules = {*registry.SYSTEM_TASK_MODULES, *defaults.task_modules}
    timeouts = [
        t.timeout_s for t in map(registry.get, registry.names()) if t.func.__module__ in modules
    ]
    assert len(timeouts) >= 10
    # the longest a job may run by default, then its outcome's write with its retries
    longest = max(*timeouts, defaults.max_timeout_s) + defaults.worker_db_retry_s
    assert seconds(worker["stop_grace_period"]) > longest


def test_api_worker_and_reconciler_share_a_metrics_directory_that_starts_empty() -> None:
    spec = compose()
    services = spec["services"]
    for name in POOLED:
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/data/metrics"
        assert "metrics:/data/metrics" in services[name]["volumes"]
    # in memory: gone when the last container using it stops, so each start begins empty
    metrics = spec["volumes"]["metrics"]["driver_opts"]
    assert (metrics["type"], metrics["device"]) == ("tmpfs", "tmpfs")
    options = dict(o.split("=") for o in metrics["o"].split(","))
    assert options["uid"] == options["gid"] == image_uid()


def test_api_and_worker_share_the_artifacts_volume() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        assert "artifacts:/data/artifacts" in services[name]["volumes"]
        assert services[name]["environment"]["JOBS_ARTIFACTS_DIR"] == "/data/artifacts"


def test_send_email_goes_to_the_mail_profile_s_sink_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    settings = settings_of(environment("worker"), monkeypatch)
    assert settings.smtp_host == "mailpit"
    assert settings.smtp_port == 1025  # Mailpit's SMTP port
    assert not settings.smtp_user
    assert not (settings.smtp_starttls or settings.smtp_ssl)
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    for key in ("JOBS_SMTP_HOST", "JOBS_SMTP_PORT", "JOBS_SMTP_USER", "JOBS_SMTP_PASSWORD"):
        raw = services["worker"]["environment"][key]  # each one a variable, for a real server
        assert VARIABLE.fullmatch(raw)["name"] == key


def sentinel_config(service: dict[str, Any]) -> list[list[str]]:
    """The lines of the configuration file a sentinel service writes, split."""
    script = service["command"][-1]
    body = script.split("<<EOF\n", 1)[1].split("\nEOF\n", 1)[0]
    return [line.split() for line in body.splitlines()]


def test_the_ha_profile_has_a_replica_and_three_sentinels_agreeing_on_the_master() -> None:
    services = compose()["services"]
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    masters = set()
    for name in SENTINELS:
        assert services[name]["command"][-1].rstrip().endswith("--sentinel"), name
        config = sentinel_config(services[name])
        assert ["port", "26379"] in config
        monitor = next(line for line in config if line[:2] == ["sentinel", "monitor"])
        masters.add(tuple(monitor[2:]))
        down_ms = next(int(line[3]) for line in config if line[1] == "down-after-milliseconds")
        # workers ride out a third of the lease; a failover must fit in it
        assert down_ms / 1000 + 2 < Settings().lease_s / 3
    assert masters == {("jobsvc", "redis", "6379", "2")}  # a quorum of two of the three


def test_compose_ha_points_every_redis_user_at_the_sentinels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]
    overrides = compose_ha()["services"]
    assert set(overrides) <= set(services)
    master = _monitors(services)[0][2]
    for name in ("api", "worker", "reconciler", "dashboard"):
        settings = settings_of(environment(name, ha=True), monkeypatch)
        assert settings.sentinels == [(s, 26379) for s in SENTINELS], name
        assert settings.redis_sentinel_master == master, name
        assert set(SENTINELS) <= set(overrides[name]["depends_on"]), name


def _monitors(services: dict[str, Any]) -> list[list[str]]:
    return [
        line
        for name in SENTINELS
        for line in sentinel_config(services[name])
        if line[:2] == ["sentinel", "monitor"]
    ]


def image_uid() -> str:
    """The uid the image's processes run as."""
    found = re.search(r"useradd [^\n]*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert found, "the Dockerfile makes no user"
    return found[1]


def test_the_image_installs_from_the_lock_with_the_pinned_uv() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned
    assert f"ARG UV_VERSION={pinned[1]}\n" in dockerfile
    syncs = re.findall(r"uv sync ([^\n]*)", dockerfile)
    assert syncs == ["--frozen --no-dev --no-install-project", "--frozen --no-dev --no-editable"]
    # the lock's layer comes before the code's, so a code change reuses it
    assert dockerfile.index("COPY pyproject.toml uv.lock") < dockerfile.index("COPY service")


def test_the_image_runs_as_its_user_who_owns_what_it_writes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert image_uid() == "10001"
    assert "USER jobsvc" in dockerfile
    made = re.search(r"mkdir -p ([^\n&\\]+)", dockerfile)
    owned = re.search(r"chown jobsvc:jobsvc ([^\n&\\]+)", dockerfile)
    assert made and owned
    assert set(made[1].split()) == set(owned[1].split()) == {"/data/artifacts", "/data/metrics"}
