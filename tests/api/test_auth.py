"""API keys and tenant isolation, through HTTP."""

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import Engine

from service import keys
from service.settings import Settings
from tests.support import Ledger, api_client, make_key, run_worker_burst

PROTECTED = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/{id}"),
    ("POST", "/jobs/{id}/cancel"),
    ("POST", "/jobs/{id}/retry"),
    ("GET", "/jobs/{id}/events"),
    ("GET", "/tasks"),
]


@pytest.fixture
async def anonymous(settings: Settings, database: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, None) as c:
        yield c


@pytest.fixture
async def other(settings: Settings, sql_engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, make_key(sql_engine, "other")) as c:
        yield c


@pytest.fixture
async def admin(settings: Settings, sql_engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, make_key(sql_engine, "ops", admin=True)) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_route_but_health_needs_a_key(
    anonymous: httpx.AsyncClient, ledger_rows: Ledger, method: str, path: str
) -> None:
    url = path.format(id=uuid.uuid4())
    body = {"task": "echo"} if method == "POST" else None

    missing = await anonymous.request(method, url, json=body)
    bogus = await anonymous.request(
        method, url, json=body, headers={"Authorization": "Bearer jobsvc_not-a-real-key"}
    )
    basic = await anonymous.request(method, url, json=body, headers={"Authorization": "Basic eDp5"})

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"detail": "missing API key: send 'Authorization: Bearer <key>'"}
    assert bogus.status_code == 401
    assert bogus.json() == {"detail": "invalid or revoked API key"}
    assert basic.status_code == 401
    assert ledger_rows.count() == 0


async def test_health_and_readiness_are_open(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/readyz")).status_code == 200
    assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_readiness_can_require_a_key(settings: Settings, api_key: str) -> None:
    closed = settings.model_copy(update={"public_readyz": False})
    async with api_client(closed, None) as anonymous:
        assert (await anonymous.get("/readyz")).status_code == 401
    async with api_client(closed, api_key) as keyed:
        assert (await keyed.get("/readyz")).status_code == 200


async def test_a_revoked_key_is_refused_as_soon_as_the_api_hears_of_it(
    client: httpx.AsyncClient, sql_engine: Engine
) -> None:
    """The API caches live keys; the revoke's NOTIFY empties the cache (milliseconds)."""
    assert (await client.get("/jobs")).status_code == 200  # the key is cached now

    with sql_engine.begin() as conn:
        keys.revoke(conn, "tester")
    started = time.monotonic()
    while (r := await client.get("/jobs")).status_code == 200:
        assert time.monotonic() - started < 1.0, "the revoked key still worked after 1 s"
        await asyncio.sleep(0.005)

    assert r.status_code == 401
    assert r.json() == {"detail": "invalid or revoked API key"}


def test_the_key_cache_serves_nothing_while_changes_cannot_be_heard() -> None:
    listening = True
    cache = keys.KeyCache(trusted=lambda: listening)
    cache.put("jobsvc_k", keys.Client("tester"), cache.generation)
    assert cache.get("jobsvc_k") == keys.Client("tester")
    listening = False  # the listener is down (PostgreSQL restarting): look keys up again
    assert cache.get("jobsvc_k") is None
    listening = True
    cache.clear()  # a key changed
    assert cache.get("jobsvc_k") is None


def test_a_lookup_that_a_revocation_overtook_is_not_cached() -> None:
    cache = keys.KeyCache(trusted=lambda: True)
    started = cache.generation  # a lookup begins (the key still live in the ledger)
    cache.clear()  # meanwhile the key is revoked: NOTIFY empties the cache
    cache.put("jobsvc_k", keys.Client("tester"), started)  # the lookup's answer arrives
    assert cache.get("jobsvc_k") is None


def test_a_cached_key_is_trusted_for_the_cache_time_at_most() -> None:
    cache = keys.KeyCache(trusted=lambda: True, ttl_s=0.2)  # notifications never arrive
    cache.put("jobsvc_k", keys.Client("tester"), cache.generation)
    assert cache.get("jobsvc_k") == keys.Client("tester")
    time.sleep(0.3)
    assert cache.get("jobsvc_k") is None


async def test_clients_see_only_their_own_jobs(
    client: httpx.AsyncClient, other: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    mine = (await client.post("/jobs", json={"task": "fail"})).json()["id"]
    theirs = (await other.post("/jobs", json={"task": "echo"})).json()["id"]
    run_worker_burst(settings)

    for method, path in [
        ("GET", f"/jobs/{mine}"),
        ("POST", f"/jobs/{mine}/cancel"),
        ("POST", f"/jobs/{mine}/retry"),
        ("GET", f"/jobs/{mine}/events"),
    ]:
        r = await other.request(method, path)
        assert r.status_code == 404, (method, path)
        assert r.json() == {"detail": f"no job with id {mine}"}
    listed = (await other.get("/jobs", params={"limit": 500})).json()["items"]
    assert [j["id"] for j in listed] == [theirs]
    row = ledger_rows.row(mine)
    assert row is not None and row["status"] == "failed" and row["attempt"] == 1  # untouched
    assert row["owner"] == "tester"


async def test_an_admin_sees_and_acts_on_every_job(
    client: httpx.AsyncClient, other: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    mine = (await client.post("/jobs", json={"task": "echo"})).json()["id"]
    theirs = (await other.post("/jobs", json={"task": "echo"})).json()["id"]

    listed = {j["id"] for j in (await admin.get("/jobs")).json()["items"]}
    assert listed == {mine, theirs}
    assert (await admin.get(f"/jobs/{theirs}")).status_code == 200
    canceled = await admin.post(f"/jobs/{mine}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"


async def test_idempotency_keys_are_per_client(
    client: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "same-key"}
    a = await client.post("/jobs", json={"task": "echo"}, headers=headers)
    b = await other.post("/jobs", json={"task": "echo", "args": {"value": 2}}, headers=headers)

    assert a.status_code == 202 and b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


async def test_dev_mode_needs_no_key(settings: Settings) -> None:
    dev = settings.model_copy(update={"dev_mode": True})
    async with api_client(dev, None) as anonymous:
        r = await anonymous.post("/jobs", json={"task": "echo"})
        assert r.status_code == 202
        assert (await anonymous.get(f"/jobs/{r.json()['id']}")).status_code == 200


def test_key_names_are_checked(sql_engine: Engine) -> None:
    from service import errors

    make_key(sql_engine, "taken")
    with pytest.raises(errors.KeyNameTaken):
        make_key(sql_engine, "taken")
    with pytest.raises(errors.KeyNameInvalid):
        make_key(sql_engine, "no spaces allowed")
    with sql_engine.begin() as conn, pytest.raises(errors.KeyUnknown):
        keys.revoke(conn, "never-made")


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json"])
async def test_metrics_and_the_api_document_can_require_a_key(
    settings: Settings, api_key: str, path: str
) -> None:
    closed = settings.model_copy(update={"public_metrics": False, "public_docs": False})
    async with api_client(closed, None) as anonymous:
        refused = await anonymous.get(path)
        ui = await anonymous.get("/docs")
    async with api_client(closed, api_key) as keyed:
        served = await keyed.get(path)

    assert refused.status_code == 401
    assert ui.status_code == 404  # a browser cannot send a key: no UI while the document is closed
    assert served.status_code == 200
    if path == "/openapi.json":
        assert "/jobs" in served.json()["paths"]


def test_keys_are_stored_only_as_hashes(sql_engine: Engine) -> None:
    key = make_key(sql_engine, "hashed")

    with sql_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM api_keys WHERE name = 'hashed'").mappings().all()

    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0].values())
    assert key not in stored and key[len("jobsvc_") :] not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored
