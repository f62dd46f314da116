"""rq-dashboard on the service's Redis, reading jobs with the JSON serializer, served by
waitress."""

import logging
import socket
from typing import Any

from redis import Redis
from redis.connection import parse_url
from rq.job import Job
from rq.serializers import JSONSerializer

from service.settings import Settings

log = logging.getLogger("jobsvc")


def build(settings: Settings) -> Any:
    """The dashboard's Flask app: basic auth when credentials are set; read-only."""
    from flask import request
    from rq_dashboard import web
    from rq_dashboard.cli import make_flask_app

    password = (
        settings.dashboard_password.get_secret_value() if settings.dashboard_password else None
    )
    app = make_flask_app(None, settings.dashboard_username, password, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url(settings)
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = True
    app.config["DEPRECATED_OPTIONS"] = []
    web.config.serializer = JSONSerializer
    # Some of rq-dashboard 0.9's views (the job page among them) fetch a job without a
    # serializer, which means pickle: anything planted in Redis would run here.
    web.Job = JsonJob
    web.setup_rq_connection(app)

    @app.before_request  # type: ignore[untyped-decorator]
    def read_only() -> Any:
        # Requeueing here would bypass the ledger (and rq-dashboard 0.9 reads the job
        # without the JSON serializer); retries go through POST /jobs/{id}/retry.
        if request.endpoint in _CHANGES:
            return {"detail": "read-only dashboard: retry jobs through the API"}, 403
        return None

    return app


def serve(settings: Settings, sock: socket.socket) -> None:
    """Serve the dashboard on a listening socket with waitress (a production WSGI server)
    until the process is stopped."""
    from waitress import create_server  # type: ignore[import-untyped]

    server = create_server(build(settings), sockets=[sock], threads=4, ident="jobsvc-dashboard")
    host, port = sock.getsockname()[:2]
    log.info("dashboard ready on http://%s:%d", host, port)
    server.run()


def redis_url(settings: Settings) -> str:
    """REDIS_URL, or behind Sentinel the URL rq-dashboard reads sentinels from
    (`redis+sentinel://[:password@]host:port,…/master/db`)."""
    if not settings.redis_sentinels:
        return str(settings.redis_url)
    url = parse_url(str(settings.redis_url))  # type: ignore[no-untyped-call]
    secret = f":{url['password']}@" if url.get("password") else ""
    hosts = ",".join(settings.redis_sentinels)
    return f"redis+sentinel://{secret}{hosts}/{settings.redis_sentinel_master}/{url.get('db', 0)}"


class JsonJob(Job):
    """RQ's Job, read with the JSON serializer unless one is given."""

    @classmethod
    def fetch(cls, id: str, connection: Redis | None = None, serializer: Any = None) -> Job:
        return super().fetch(id, connection=connection, serializer=serializer or JSONSerializer)


_CHANGES = {
    "rq_dashboard.requeue_job_view",
    "rq_dashboard.requeue_all",
    "rq_dashboard.compact_queue",
    "rq_dashboard.empty_queue",
    "rq_dashboard.delete_job_view",
}
