"""`jobsvc`: the service's processes and its set-up commands."""

import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from service import client_cli, lease

# The engine (SQLAlchemy, Redis, RQ, pydantic-settings) is imported by the commands that
# use it: `jobsvc --help` and the client commands answer without loading any of it.
if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("jobsvc")


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
    lease.end_with_named_parent()  # under `jobsvc run`: never outlive it


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=None, type=int, help="[JOBS_API_PORT; 8000]")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    envvar="JOBS_API_WORKERS",
    help="uvicorn processes (each with its own LISTEN connection and pool)",
)
def api(host: str, port: int | None, workers: int) -> None:
    """Serve the HTTP API (uvicorn, the app from service.main:create_app)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from service import localservers

    settings = get_settings()
    _setup_logging(settings)
    _require_database(settings)
    _require_redis(settings)
    port = port or settings.api_port
    try:  # bound before the app starts: its "ready" line means a client can connect
        sock = localservers.listen("api", host, port)
    except localservers.PortInUse as exc:
        _fail(str(exc))
    config = uvicorn.Config(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through the service's format (JSON lines)
        access_log=False,
        timeout_graceful_shutdown=settings.api_grace_s,
    )
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)  # the app did not start; its lines say why


@main.command()
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="quit when the queues are empty")
@click.option(
    "--simple", is_flag=True, help="run jobs in-process (SimpleWorker): faster, unstoppable"
)
@click.option("--name", default=None, help="worker name (default: host.pid; NAME-1… with -p)")
@click.option(
    "--processes",
    "-p",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="worker processes under this command: each runs one job at a time; a signal "
    "stops them all, one that dies is started again",
)
def worker(
    queues: tuple[str, ...], burst: bool, simple: bool, name: str | None, processes: int
) -> None:
    """Run RQ workers that keep the ledger current (all known queues by default)."""
    from service import registry, workers

    settings = get_settings()
    _setup_logging(settings)
    _require_database(settings)
    _require_redis(settings)
    registry.load(settings.task_modules)
    names = list(queues) or registry.queues()
    if processes == 1:
        workers.run(settings, names, simple=simple, burst=burst, name=name)
        return
    sys.exit(
        workers.supervise(settings, names, count=processes, simple=simple, burst=burst, name=name)
    )


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
@click.option("--port", default=None, type=int, help="[JOBS_DASHBOARD_PORT; 9181]")
def dashboard(host: str, port: int | None) -> None:
    """Serve rq-dashboard on the same Redis (JSON serializer, delete disabled; waitress)."""
    from service import dashboard as rq_dashboard
    from service import localservers

    settings = get_settings()
    _setup_logging(settings)
    if not settings.dev_mode and not (settings.dashboard_username and settings.dashboard_password):
        _fail(
            "the dashboard needs JOBS_DASHBOARD_USERNAME and JOBS_DASHBOARD_PASSWORD "
            "(it never runs open, except with JOBS_DEV_MODE=1 on a developer's machine)"
        )
    _require_redis(settings)
    try:
        sock = localservers.listen("dashboard", host, port or settings.dashboard_port)
    except localservers.PortInUse as exc:
        _fail(str(exc))
    rq_dashboard.serve(settings, sock)


@main.group(name="keys", short_help="API keys: create, list, revoke.")
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
@click.option("--port", default=None, type=int, help="API port [JOBS_API_PORT; 8000]")
@click.option("--dashboard-port", default=None, type=int, help="[JOBS_DASHBOARD_PORT; 9181]")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="worker processes [JOBS_WORKERS; 1]",
)
def run(port: int | None, dashboard_port: int | None, workers: int | None) -> None:
    """Everything, in the foreground: local servers if needed, database, migrations, API,
    workers, reconciler and dashboard (and in dev mode a mail sink). Ctrl-C stops all."""
    from service import localservers, stack

    settings = get_settings()
    _setup_logging(settings)
    try:
        code = stack.run(
            settings,
            api_port=port or settings.api_port,
            dashboard_port=dashboard_port or settings.dashboard_port,
            workers=workers or settings.workers,
        )
    except (localservers.PortInUse, stack.Failed) as exc:
        _fail(str(exc))
    sys.exit(code)
