"""rq-dashboard on the service's Redis, reading jobs with the JSON serializer."""

from typing import Any

from rq.serializers import JSONSerializer

from service.settings import Settings


def build(settings: Settings) -> Any:
    """The dashboard's Flask app: basic auth when credentials are set, deleting disabled."""
    from rq_dashboard import web
    from rq_dashboard.cli import make_flask_app

    password = (
        settings.dashboard_password.get_secret_value() if settings.dashboard_password else None
    )
    app = make_flask_app(None, settings.dashboard_username, password, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = str(settings.redis_url)
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = True
    app.config["DEPRECATED_OPTIONS"] = []
    web.config.serializer = JSONSerializer
    web.setup_rq_connection(app)
    return app
