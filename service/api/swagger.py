"""`/docs`: Swagger UI served from this process (its files come with the fastapi-swagger
package), so the page works without reaching a CDN and under a content security policy
that allows only this origin."""

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

_FILES = Path(str(resources.files("fastapi_swagger") / "resources"))
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
PREFIX = "/docs"


def install(app: FastAPI, openapi_url: str) -> None:
    @app.get(PREFIX, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon-32x32.png",
        )

    for name, media_type in _ASSETS.items():
        app.add_api_route(
            f"{PREFIX}/{name}",
            _asset(name, media_type),
            include_in_schema=False,
            methods=["GET"],
        )


def _asset(name: str, media_type: str):  # type: ignore[no-untyped-def]
    async def serve() -> FileResponse:
        return FileResponse(_FILES / name, media_type=media_type)

    return serve
