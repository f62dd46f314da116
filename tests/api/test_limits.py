"""Request limits, security headers, trusted hosts, CORS, and what an internal error shows."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.support import Ledger, api_client


async def test_body_over_the_limit_is_413_and_stores_nothing(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    big = {"task": "echo", "args": {"value": "x" * (1024 * 1024)}}

    r = await client.post("/jobs", json=big)

    assert r.status_code == 413
    assert r.json() == {"detail": "request body too large: over 1048576 bytes"}
    assert ledger_rows.count() == 0


async def test_a_streamed_body_without_length_is_counted_too(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"task": "echo", "args": {"value": "'
        for _ in range(300):
            yield b"y" * 4096
        yield b'"}}'

    r = await client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})

    assert r.status_code == 413
    assert ledger_rows.count() == 0


async def test_headers_over_the_limit_are_431(client: httpx.AsyncClient) -> None:
    r = await client.get("/jobs", headers={"X-Padding": "p" * 20_000})
    assert r.status_code == 431
    assert "request headers too large" in r.json()["detail"]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"task": "echo", "args": {"value": nested(40)}}, "args nest deeper than 32 levels"),
        ({"task": "echo", "args": {"value": "z" * 300_000}}, "over the limit of 262144"),
        ({"task": "echo", "meta": {"note": "m" * 20_000}}, "meta take"),
        ({"task": "echo", "meta": nested(40)}, "meta nest deeper than 32 levels"),
    ],
    ids=["args-depth", "args-size", "meta-size", "meta-depth"],
)
async def test_json_limits(
    client: httpx.AsyncClient, ledger_rows: Ledger, body: dict[str, Any], message: str
) -> None:
    r = await client.post("/jobs", json=body)

    assert r.status_code == 422
    assert message in r.json()["detail"]
    assert ledger_rows.count() == 0


async def test_integers_past_64_bits_are_measured_and_kept(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    big = 2**70 + 1  # the fast JSON writer refuses it; the standard library's takes over

    kept = await client.post("/jobs", json={"task": "echo", "args": {"value": [big, -big]}})
    over = await client.post("/jobs", json={"task": "echo", "args": {"value": [big] * 12_000}})

    assert kept.status_code == 202, kept.text
    assert kept.json()["args"] == {"value": [big, -big]}
    assert (await client.get(f"/jobs/{kept.json()['id']}")).json()["args"]["value"][0] == big
    assert over.status_code == 422
    assert "over the limit of 262144" in over.json()["detail"]
    assert ledger_rows.count() == 1


async def test_absurdly_deep_json_is_a_clear_4xx(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    deep = b'{"task": "echo", "args": {"value": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}"

    r = await client.post("/jobs", content=deep, headers={"content-type": "application/json"})

    assert r.status_code == 400
    assert r.json() == {"detail": "There was an error parsing the body"}
    assert ledger_rows.count() == 0


async def test_security_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/jobs")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    docs = await client.get("/docs")
    # Swagger UI comes from this origin: scripts from elsewhere stay blocked
    assert docs.headers["content-security-policy"].startswith("default-src 'self';")
    assert "cdn" not in docs.text
    assert docs.headers["x-frame-options"] == "DENY"
    bundle = await client.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert len(bundle.content) > 100_000


async def test_trusted_hosts(settings: Settings, api_key: str) -> None:
    strict = settings.model_copy(update={"trusted_hosts": ["jobs.example.com"]})
    async with api_client(strict, api_key) as c:
        assert (await c.get("/healthz", headers={"Host": "evil.example"})).status_code == 400
        assert (await c.get("/healthz", headers={"Host": "jobs.example.com"})).status_code == 200


async def test_cors_only_for_configured_origins(settings: Settings, api_key: str) -> None:
    cors = settings.model_copy(update={"cors_origins": ["https://app.example.com"]})
    async with api_client(cors, api_key) as c:
        ok = await c.get("/healthz", headers={"Origin": "https://app.example.com"})
        other = await c.get("/healthz", headers={"Origin": "https://evil.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_an_internal_error_shows_no_traceback(settings: Settings, api_key: str) -> None:
    from service.main import create_app

    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail from deep inside")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        r = await c.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text and "Traceback" not in r.text
