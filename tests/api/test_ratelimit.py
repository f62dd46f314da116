"""The per-client token bucket on `POST /jobs`."""

from sqlalchemy import Engine

from service.localservers import free_port
from service.settings import Settings
from tests.support import Ledger, api_client, make_key


def limited(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_limit": True, "rate_limit_per_s": 0.5, "rate_limit_burst": 3}
    )


async def test_a_burst_over_the_bucket_gets_429_with_retry_after(
    settings: Settings, api_key: str, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    async with api_client(limited(settings), api_key) as c:
        replies = [await c.post("/jobs", json={"task": "echo"}) for _ in range(5)]
        reads = await c.get("/jobs")  # reading is not limited

    assert [r.status_code for r in replies] == [202, 202, 202, 429, 429]
    refused = replies[3]
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    assert "too many requests; try again in" in refused.json()["detail"]
    assert reads.status_code == 200
    assert ledger_rows.count() == 3

    async with api_client(limited(settings), make_key(sql_engine, "neighbour")) as other:
        assert (await other.post("/jobs", json={"task": "echo"})).status_code == 202


async def test_without_redis_the_limit_lets_submits_through(
    settings: Settings, api_key: str, ledger_rows: Ledger
) -> None:
    dead = limited(settings).model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with api_client(dead, api_key) as c:
        codes = [(await c.post("/jobs", json={"task": "echo"})).status_code for _ in range(5)]
    assert codes == [202] * 5
    assert ledger_rows.count() == 5


def test_on_by_default_except_in_dev_mode(settings: Settings) -> None:
    dev = settings.model_copy(update={"dev_mode": True, "rate_limit": None})
    assert not dev.rate_limit_on
    assert settings.model_copy(update={"rate_limit": None}).rate_limit_on


async def test_a_batch_pays_one_token_a_job(
    settings: Settings, api_key: str, ledger_rows: Ledger
) -> None:
    """A batch larger than the burst passes on a full bucket, then the client waits until
    every job of it is paid for."""
    async with api_client(limited(settings), api_key) as c:
        batch = await c.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 10})
        after = await c.post("/jobs", json={"task": "echo"})

    assert batch.status_code == 202
    assert after.status_code == 429
    assert int(after.headers["retry-after"]) >= 14  # 10 jobs on a 3-token bucket at 0.5/s
    assert ledger_rows.count() == 10


async def test_cancels_retries_and_uploads_spend_tokens_too(
    settings: Settings, api_key: str
) -> None:
    async with api_client(limited(settings), api_key) as c:
        uploads = [await c.post("/jobs/uploads", content=b"x" * 10) for _ in range(2)]
        job = (await c.post("/jobs", json={"task": "echo"})).json()["id"]  # the last token
        cancel = await c.post(f"/jobs/{job}/cancel")
        retry = await c.post(f"/jobs/{job}/retry")

    assert [r.status_code for r in uploads] == [201, 201]
    assert (cancel.status_code, retry.status_code) == (429, 429)
