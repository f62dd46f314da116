"""`jobsvc`: the service's processes and its set-up commands."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service import client_cli

# The engine (SQLAlchemy, Redis, RQ, pydantic-settings) is imported by the commands that
# use it: `jobsvc --help` and the client commands answer without loading any of it.
if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("jobsvc")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def get_settings() -> "Settings":
    from service import settings

    return settings.get_settings()


def _setup_logging(settings: "Settings") -> None:
    from service import logs

    logs.setup(settings.log_level, settings.log_format)


def _fail(message: str) -> None:
    click.echo(f"jobsvc: {message}", err=True)
    sys.exit(2)


def _require_database(settings: "Settings") -> None:
    from service import db

    engine = db.create_worker_engine(settings)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # any failure to connect is reported the same way
        _fail(
            f"cannot reach PostgreSQL at {db.redacted(str(settings.database_url))}: "
            f"{type(exc).__name__}: {getattr(exc, 'orig', exc)}"
        )
    finally:
        engine.dispose()


def _require_redis(settings: "Settings") -> None:
    from service import broker, db

    try:
        broker.ping(broker.connect(settings))
    except Exception as exc:  # any failure to connect is reported the same way
        _fail(f"cannot reach Redis at {db.redacted(str(settings.redis_url))}: {exc}")


@click.group(commands=client_cli.COMMANDS)
def main() -> None:
    """Durable background jobs: API, workers and their tools."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="JOBS_API_WORKERS",
    help="uvicorn processes (each with its own LISTEN connection and pool)",
)
def api(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (uvicorn, the app from service.main:create_app)."""
    import uvicorn

    settings = get_settings()
    _setup_logging(settings)
    _require_database(settings)
    _require_redis(settings)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through the service's format (JSON lines)
        access_log=False,
    )


@main.command()
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="quit when the queues are empty")
@click.option(
    "--simple", is_flag=True, help="run jobs in-process (SimpleWorker): faster, unstoppable"
)
@click.option("--name", default=None, help="worker name (default: host.pid)")
def worker(queues: tuple[str, ...], burst: bool, simple: bool, name: str | None) -> None:
    """Run an RQ worker that keeps the ledger current (all known queues by default)."""
    from service import broker, registry, tracing
    from service.worker import LedgerWorker, SimpleLedgerWorker

    settings = get_settings()
    _setup_logging(settings)
    _require_database(settings)
    _require_redis(settings)
    tracing.setup("jobsvc-worker")
    registry.load(settings.task_modules)
    names = list(queues) or registry.queues()
    cls = SimpleLedgerWorker if simple else LedgerWorker
    w = cls(
        names,
        # Redis away for less than a lease check (JOBS_LEASE_S / 3) stalls a job's
        # bookkeeping, never its lease; the worker goes on when Redis is back.
        connection=broker.connect(settings, ride_out_s=settings.lease_s / 3),
        serializer=broker.SERIALIZER,
        name=name or f"{socket.gethostname()}.{os.getpid()}",
    )
    log.info("worker %s ready (%s) on queues: %s", w.name, cls.__name__, ", ".join(names))
    w.work(burst=burst, logging_level=settings.log_level.upper())


@main.command()
@click.option("--once", is_flag=True, help="one pass, then exit")
@click.option(
    "--interval",
    type=float,
    default=None,
    help="seconds between passes [JOBS_RECONCILE_INTERVAL_S]",
)
def reconcile(once: bool, interval: float | None) -> None:
    """Repair what faults leave: lost leases, due scheduled jobs, jobs Redis lost."""
    from service import reconcile as reconciler

    settings = get_settings()
    _setup_logging(settings)
    _require_database(settings)
    _require_redis(settings)
    every = interval or settings.reconcile_interval_s
    reconciler.serve(
        settings, every, once, ready=lambda: log.info("reconciler ready (every %gs)", every)
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9181, show_default=True, type=int)
def dashboard(host: str, port: int) -> None:
    """Serve rq-dashboard on the same Redis (JSON serializer, delete disabled)."""
    from service import dashboard as rq_dashboard

    settings = get_settings()
    _setup_logging(settings)
    if not settings.dev_mode and not (settings.dashboard_username and settings.dashboard_password):
        _fail(
            "the dashboard needs JOBS_DASHBOARD_USERNAME and JOBS_DASHBOARD_PASSWORD "
            "(it never runs open, except with JOBS_DEV_MODE=1 on a developer's machine)"
        )
    _require_redis(settings)
    app = rq_dashboard.build(settings)
    log.info("dashboard ready on http://%s:%d", host, port)
    app.run(host=host, port=port)


@main.group(name="keys")
def keys_group() -> None:
    """API keys: each names a client, which owns the jobs it submits."""


def _keys_connection() -> Any:
    from service import db

    settings = get_settings()
    _setup_logging(settings)
    _require_database(settings)
    return db.create_worker_engine(settings)


@keys_group.command(name="create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="may see and act on every client's jobs")
def keys_create(name: str, admin: bool) -> None:
    """Create a key and print it; it is shown only this once."""
    from service import errors, keys

    engine = _keys_connection()
    try:
        with engine.begin() as conn:
            key = keys.create(conn, name, admin)
    except errors.JobServiceError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    click.echo(f"created {'admin ' if admin else ''}key {name!r}; it is shown only now:", err=True)
    click.echo(key)


@keys_group.command(name="list")
def keys_list() -> None:
    """Every key: name, first characters, admin, created, revoked."""
    from service import keys

    engine = _keys_connection()
    try:
        with engine.connect() as conn:
            listed = keys.list_keys(conn)
    finally:
        engine.dispose()
    if not listed:
        click.echo("no API keys: create one with `jobsvc keys create NAME`")
        return
    click.echo(f"{'NAME':24} {'KEY':14} {'ADMIN':5} {'CREATED':20} REVOKED")
    for k in listed:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M:%S}" if k.revoked_at else "-"
        click.echo(
            f"{k.name:24} {k.prefix + '…':14} {'yes' if k.admin else 'no':5} "
            f"{k.created_at:%Y-%m-%d %H:%M:%S}  {revoked}"
        )


@keys_group.command(name="revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke a key: its next request gets 401."""
    from service import errors, keys

    engine = _keys_connection()
    try:
        with engine.begin() as conn:
            keys.revoke(conn, name)
    except errors.JobServiceError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    click.echo(f"revoked key {name!r}")


@main.group(name="db")
def db_group() -> None:
    """Database set-up."""


@db_group.command(name="create")
def db_create() -> None:
    """Create the database named in DATABASE_URL if it is missing."""
    from service import db

    settings = get_settings()
    _setup_logging(settings)
    try:
        created = db.create_database(settings)
    except Exception as exc:  # any failure to connect is reported the same way
        _fail(f"cannot create the database at {db.redacted(str(settings.database_url))}: {exc}")
    url = db.redacted(str(settings.database_url))
    click.echo(f"created database {url}" if created else f"database {url} exists")


@main.command()
@click.option("--port", default=8000, show_default=True, type=int, help="API port")
@click.option("--dashboard-port", default=9181, show_default=True, type=int)
def run(port: int, dashboard_port: int) -> None:
    """Everything, in the foreground: local servers if needed, database, migrations, API,
    worker and dashboard. Ctrl-C stops all."""
    from service import localservers

    settings = get_settings()
    _setup_logging(settings)
    local = localservers.ensure(settings)
    env = {**os.environ, **local.env, **_shared_metrics_dir()}
    children: list[subprocess.Popen[bytes]] = []
    try:
        for step in (["jobsvc", "db", "create"], ["alembic", "upgrade", "head"]):
            subprocess.run(_bin(step), env=env, cwd=PROJECT_ROOT, check=True)
        for command in (
            ["jobsvc", "api", "--port", str(port)],
            ["jobsvc", "worker"],
            ["jobsvc", "reconcile"],
            ["jobsvc", "dashboard", "--port", str(dashboard_port)],
        ):
            children.append(
                subprocess.Popen(_bin(command), env=env, cwd=PROJECT_ROOT, start_new_session=True)
            )
        log.info(
            "api on http://127.0.0.1:%d, dashboard on http://127.0.0.1:%d", port, dashboard_port
        )
        _supervise(children)
    except subprocess.CalledProcessError as exc:
        _fail(f"{' '.join(exc.cmd)} failed (exit {exc.returncode})")
    finally:
        _stop(children)
        local.stop()


def _shared_metrics_dir() -> dict[str, str]:
    """A fresh directory where API, worker and reconciler keep their metrics, so /metrics
    adds them up (PROMETHEUS_MULTIPROC_DIR, unless one is set already)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return {}
    directory = PROJECT_ROOT / ".data" / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory)}


def _bin(command: list[str]) -> list[str]:
    """A console script from the same environment as this one."""
    return [str(Path(sys.executable).parent / command[0]), *command[1:]]


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    """Wait until Ctrl-C (or SIGTERM), or until one child exits."""
    # Ctrl-C stops everything, even where a shell started this with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        log.error("a process exited; stopping the rest")
    except KeyboardInterrupt:
        log.info("stopping")


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
