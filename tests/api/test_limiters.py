"""Shared rate limits through the API and an in-process worker: the admin routes, a job
sent away to wait for its limiter's next slot, and a task told to slow down."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from service.settings import Settings, per_second
from tests.support import Ledger, api_client, make_key, run_worker_burst

pytestmark = pytest.mark.usefixtures("test_tasks")


@pytest.fixture
async def admin(settings: Settings, sql_engine: Engine) -> httpx.AsyncClient:
    async with api_client(settings, make_key(sql_engine, "ops", admin=True)) as c:
        yield c


async def _submit(client: httpx.AsyncClient, **args: object) -> str:
    r = await client.post("/jobs", json={"task": "limited", "args": args})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


async def test_admins_set_list_and_remove_rates(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    assert (await client.get("/rate-limits")).status_code == 403
    assert (await client.put("/rate-limits/smtp", json={"rate": "5/s"})).status_code == 403

    made = await admin.put("/rate-limits/webhook:api.example.com", json={"rate": "120/min"})
    assert made.status_code == 200, made.text
    assert made.json()["per_s"] == 2.0 and made.json()["changed_by"] == "ops"
    listed = (await admin.get("/rate-limits")).json()
    assert [(lim["name"], lim["per_s"]) for lim in listed] == [("webhook:api.example.com", 2.0)]

    assert (await admin.delete("/rate-limits/webhook:api.example.com")).status_code == 204
    gone = await admin.delete("/rate-limits/webhook:api.example.com")
    assert gone.status_code == 404 and "no limiter" in gone.json()["detail"]
    assert (await admin.get("/rate-limits")).json() == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/rate-limits/smtp", {"rate": "fast"}, 422),
        ("/rate-limits/smtp", {"rate": "0/s"}, 422),
        ("/rate-limits/smtp", {"rate": "5/s", "burst": 3}, 422),
        ("/rate-limits/a%20b", {"rate": "5/s"}, 422),
        ("/rate-limits/declared", {"rate": "5/s"}, 409),
    ],
)
async def test_bad_rates_and_names_are_refused(
    settings: Settings, sql_engine: Engine, path: str, body: dict[str, object], status: int
) -> None:
    configured = settings.model_copy(update={"rate_limits": {"declared": 1.0}})
    async with api_client(configured, make_key(sql_engine, "ops", admin=True)) as admin:
        r = await admin.put(path, json=body)
    assert r.status_code == status, r.text


def test_rates_are_read_as_n_per_second_minute_or_hour() -> None:
    assert per_second("20/s") == 20 and per_second("90/min") == 1.5
    assert per_second(" 36 / h ") == 0.01
    parsed = Settings(rate_limits="smtp=10/s, stripe=100/min")  # type: ignore[arg-type]
    assert parsed.rate_limits == {"smtp": 10.0, "stripe": 100 / 60}
    for bad in ("smtp", "smtp=10", "smtp=-1/s", "a b=1/s"):
        with pytest.raises(ValueError, match=r"rate|limiter"):
            Settings(rate_limits=bad)  # type: ignore[arg-type]


async def test_a_job_its_limiter_cannot_start_soon_waits_as_scheduled(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    await admin.put("/rate-limits/t20", json={"rate": "1/min"})
    first, second, third = [await _submit(client) for _ in range(3)]

    run_worker_burst(settings.model_copy(update={"rate_wait_s": 0}))

    assert (await client.get(f"/jobs/{first}")).json()["status"] == "finished"
    now = datetime.now(UTC)
    runs = []
    for job_id in (second, third):
        job = (await client.get(f"/jobs/{job_id}")).json()
        assert job["status"] == "scheduled" and job["attempt"] == 0  # no attempt spent
        assert "rate_limited" in ledger_rows.events(job_id)[-1]["detail"]
        runs.append(datetime.fromisoformat(job["run_at"]))
    # each sent away to a slot of its own, a minute apart, in order
    assert now + timedelta(seconds=50) < runs[0] < now + timedelta(seconds=61)
    assert timedelta(seconds=59) < runs[1] - runs[0] < timedelta(seconds=61)
    [limiter] = (await admin.get("/rate-limits")).json()
    assert limiter["started"] == 1 and limiter["throttled"] == 2


async def test_a_task_told_to_slow_down_backs_its_limiter_off_without_spending_an_attempt(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    job_id = await _submit(client, limiter="api", slow_down_s=30)

    run_worker_burst(settings)

    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "scheduled" and job["throttled"] == 1
    assert job["attempt"] == 1 and job["max_attempts"] == 2  # as many attempts left as before
    assert job["error"]["type"] == "RateLimited"
    assert "throttled" in ledger_rows.events(job_id)[-1]["detail"]
    [limiter] = (await admin.get("/rate-limits")).json()  # made by the slow-down: no rate
    assert limiter["name"] == "api" and limiter["per_s"] is None
    backed_off = datetime.fromisoformat(limiter["backed_off_until"]) - datetime.now(UTC)
    assert timedelta(seconds=25) < backed_off <= timedelta(seconds=30)

    # another job of the limiter waits out the back-off (sent away: the wait is long)
    other = await _submit(client, limiter="api")
    run_worker_burst(settings)
    assert (await client.get(f"/jobs/{other}")).json()["status"] == "scheduled"


async def test_a_job_throttled_too_often_fails_its_attempt(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    job_id = await _submit(client, limiter="api", slow_down_s=30)

    run_worker_burst(settings.model_copy(update={"max_throttled": 0}))

    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "failed" and job["throttled"] == 0
    assert job["error"]["type"] == "RateLimited"
