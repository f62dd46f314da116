"""Each compose service's command, run here as compose.yaml writes it and with the
environment it gives (host and port moved to loopback and free ports, each compose host
to where that server runs here) against real servers: PostgreSQL behind a real PgBouncer
in transaction mode, an SMTP sink in Mailpit's place, and, for compose.ha.yaml, Redis
behind three real sentinels."""

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from service.localservers import free_port
from service.settings import Settings
from tests.e2e.conftest import BIN, QUIET, Inbox, Stack, get_when_up, wait_until
from tests.e2e.pgbouncer import PgBouncer
from tests.e2e.sentinel import MASTER_NAME, RedisWithSentinels
from tests.support import RUN_ID, create_fresh_database, drop_database
from tests.test_compose import compose, environment, interpolate

pytestmark = pytest.mark.e2e


def local(command: list[str], port: int) -> list[str]:
    """The compose command with its --host on loopback and its --port free here."""
    out = list(command)
    if "--host" in out:
        out[out.index("--host") + 1] = "127.0.0.1"
    if "--port" in out:
        out[out.index("--port") + 1] = str(port)
    return out


class Here:
    """Where each server compose names runs on this machine."""

    def __init__(self, tmp_path: Path, database: str, bouncer: PgBouncer, smtp_port: int) -> None:
        self.tmp_path = tmp_path
        self.database = database  # PostgreSQL itself: the stack's database
        self.bouncer = bouncer
        self.smtp_port = smtp_port
        self.redis_url = os.environ["REDIS_URL"]
        self.sentinels: RedisWithSentinels | None = None

    def env(self, service: str, *, ha: bool = False, **variables: str) -> dict[str, str]:
        """The service's compose environment, pointed at the servers here."""
        env = environment(service, ha=ha, variables=variables)
        for key in ("DATABASE_URL", "JOBS_LISTEN_DATABASE_URL"):
            if key in env:
                given = make_url(env[key])
                target = {"postgres": self.database, "pgbouncer": self.bouncer.url(self.database)}
                env[key] = (
                    make_url(target[given.host or ""])
                    .set(drivername=given.drivername)
                    .render_as_string(hide_password=False)
                )
        if "REDIS_SENTINELS" in env:
            assert self.sentinels is not None
            env["REDIS_SENTINELS"] = self.sentinels.sentinels
            env["REDIS_URL"] = "redis://127.0.0.1/0"  # the sentinels' own Redis, db 0
        elif "REDIS_URL" in env:
            assert make_url(env["REDIS_URL"]).host == "redis"
            env["REDIS_URL"] = self.redis_url
        if "JOBS_SMTP_HOST" in env:
            assert env["JOBS_SMTP_HOST"] == "mailpit"
            env["JOBS_SMTP_HOST"], env["JOBS_SMTP_PORT"] = "127.0.0.1", str(self.smtp_port)
        for key in ("JOBS_ARTIFACTS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
            if key in env:
                env[key] = str(self.tmp_path / Path(env[key]).name)
                Path(env[key]).mkdir(exist_ok=True)
        for key, value in env.items():  # every compose host was given its place here
            for host in ("@postgres", "@pgbouncer", "//redis", "mailpit", "sentinel-", "/data/"):
                assert host not in value, f"{service}: {key}={value}"
        return env


def start(
    stack: Stack, name: str, env: dict[str, str], command: list[str]
) -> subprocess.Popen[bytes]:
    """Start `command` with `env` over the test's own environment."""
    stack.env = {**os.environ, "PYTHONUNBUFFERED": "1", **QUIET, **env}
    return stack.start(name, *command)


def wait_for_api(stack: Stack) -> None:
    wait_until(lambda: _answers(stack), 60, f"the API: {stack.log('api')}")


def _answers(stack: Stack) -> bool:
    assert stack.procs["api"].poll() is None, stack.log("api")
    try:
        return stack.http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def fresh_database(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"jobsvc_test_compose_{RUN_ID}"
    url = create_fresh_database(settings, name)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    drop_database(settings, name)


@pytest.fixture
def make_here(
    tmp_path: Path, smtp: tuple[Inbox, int], redis_conn: object
) -> Iterator[Callable[[str], Here]]:
    """Servers for a stack on this database: PgBouncer in front of it as compose.yaml
    configures its own, and the test's Redis and SMTP sink."""
    services = compose()["services"]
    pgbouncer = environment("pgbouncer")
    assert services["pgbouncer"]["image"].startswith("edoburu/pgbouncer:")
    assert pgbouncer["POOL_MODE"] == "transaction"  # as the helper runs it
    bouncers: list[PgBouncer] = []

    def make(database: str) -> Here:
        bouncer = PgBouncer(database, pool_size=int(pgbouncer["DEFAULT_POOL_SIZE"]))
        bouncers.append(bouncer)
        bouncer.start()
        return Here(tmp_path, database, bouncer, smtp[1])

    try:
        yield make
    finally:
        for bouncer in bouncers:
            bouncer.stop()


def admin_key(here: Here) -> str:
    """`docker compose run --rm api jobsvc keys create …`: the API's environment."""
    done = subprocess.run(
        [str(BIN / "jobsvc"), "keys", "create", "compose-admin", "--admin"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, **here.env("api")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_compose_commands_bring_up_a_working_stack(
    tmp_path: Path,
    fresh_database: str,
    make_here: Callable[[str], Here],
    smtp: tuple[Inbox, int],
) -> None:
    services = compose()["services"]
    here = make_here(fresh_database)
    stack = Stack(tmp_path, "")
    try:
        migrate = start(stack, "migrate", here.env("migrate"), services["migrate"]["command"])
        assert migrate.wait(60) == 0, stack.log("migrate")
        start(stack, "api", here.env("api"), local(services["api"]["command"], stack.port))
        start(stack, "reconciler", here.env("reconciler"), services["reconciler"]["command"])
        # The dashboard refuses to start without its password, and says which; given
        # one, it shows what the API enqueued, by task name (no worker runs yet).
        dashboard, port = services["dashboard"]["command"], free_port()
        refused = start(stack, "no-password", here.env("dashboard"), local(dashboard, free_port()))
        login = here.env("dashboard", JOBS_DASHBOARD_PASSWORD="s3cret-pw")
        start(stack, "dashboard", login, local(dashboard, port))
        stack.http.headers["Authorization"] = f"Bearer {admin_key(here)}"
        assert refused.wait(30) == 2
        assert "JOBS_DASHBOARD_PASSWORD" in stack.log("no-password")
        wait_for_api(stack)
        for name in ("reconciler", "dashboard"):
            stack.wait_for_log(name, "ready", timeout=60)
        queued = stack.submit("echo", value="through compose")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=10, auth=("admin", "s3cret-pw")
        ) as dash:
            page = get_when_up(dash, "/")
            assert page.status_code == 200
            assert "RQ" in page.text
            queues = get_when_up(dash, "/0/data/queues.json").json()
            assert {q["name"]: q["count"] for q in queues["queues"]}["default"] == 1
            listed = get_when_up(dash, "/0/data/jobs/default/queued/8/asc/1.json").json()
            assert [j["id"] for j in listed["jobs"]] == [queued]
            assert listed["jobs"][0]["description"] == "echo"

        # The workers' replicas run it, and send_email reaches the mail sink.
        replicas = int(interpolate(services["worker"]["deploy"]["replicas"]))
        workers = [f"worker-{n}" for n in range(1, replicas + 1)]
        for name in workers:
            start(stack, name, here.env("worker"), services["worker"]["command"])
        for name in workers:
            stack.wait_for_log(name, "ready", timeout=60)
        done = stack.wait(queued)
        assert (done["status"], done["result"]) == ("finished", "through compose")
        mail = stack.http.post("/jobs", json={"task": "send_email", "args": {
            "to": ["ops@example.com"], "subject": "from compose", "text": "hello"}})  # fmt: skip
        assert mail.status_code == 202, mail.text
        assert stack.wait(mail.json()["id"])["status"] == "finished", stack.job(mail.json()["id"])
        inbox = smtp[0]
        assert [e.rcpt_tos for e in inbox.envelopes] == [["ops@example.com"]]

        # /metrics adds up what the workers counted (their shared directory).
        metrics = stack.http.get("/metrics").text
        assert 'jobsvc_jobs_finished_total{task="echo"} 1.0' in metrics

        # Stopped as compose stops it (SIGTERM to the worker alone, as an init passes it
        # on), a worker finishes the job it runs, then exits.
        napping = stack.submit("sleep", seconds=3)
        assert stack.wait(napping, ("started",))["status"] == "started"
        events = stack.http.get(f"/jobs/{napping}/events").json()
        pid = next(e["detail"]["pid"] for e in events if e["status"] == "started")
        name = next(n for n in workers if stack.procs[n].pid == pid)
        os.kill(pid, signal.SIGTERM)
        assert stack.procs[name].wait(30) == 0, stack.log(name)
        ended = stack.job(napping)
        assert (ended["status"], ended["attempt"]) == ("finished", 1), ended

        # Every ledger connection of these processes went through PgBouncer.
        for name in ("api", "reconciler", *workers):
            assert "prepared statement" not in stack.log(name), stack.log(name)
        clients = [
            r for r in here.bouncer.show("CLIENTS") if r["database"] == here.bouncer.database
        ]
        assert len(clients) >= 1 + len(workers)
    finally:
        stack.close()


def test_compose_ha_commands_reach_redis_through_the_sentinels(
    tmp_path: Path, make_here: Callable[[str], Here], api_key: str
) -> None:
    services = compose()["services"]
    assert f"sentinel monitor {MASTER_NAME} " in services["sentinel-1"]["command"][-1]
    here = make_here(os.environ["DATABASE_URL"])  # the session's, migrated
    here.sentinels = RedisWithSentinels()
    try:
        here.sentinels.start()  # before the stack picks its port among the free ones
        stack = Stack(tmp_path, api_key)
        try:
            api = local(services["api"]["command"], stack.port)
            start(stack, "api", here.env("api", ha=True), api)
            start(stack, "worker", here.env("worker", ha=True), services["worker"]["command"])
            wait_for_api(stack)
            stack.wait_for_log("worker", "ready", timeout=60)
            done = stack.wait(stack.submit("echo", value="through the sentinels"))
            assert (done["status"], done["result"]) == ("finished", "through the sentinels")
            assert here.sentinels.master() == here.sentinels.master_port
        finally:
            stack.close()
    finally:
        here.sentinels.stop()
