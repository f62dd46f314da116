"""Fair share through the API and in-process workers: past its owner's quota a job is
parked (queued, out of Redis) and admitted as the owner's jobs end; weights scale the
quota; a cancel frees a slot the reconciler fills."""

import httpx
import pytest
from redis import Redis

from service.settings import Settings
from tests.support import Ledger, api_client, run_reconcile_pass, run_worker_burst


async def _submit_five(client: httpx.AsyncClient) -> list[dict[str, object]]:
    r = await client.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 5})
    assert r.status_code == 202, r.text
    jobs: list[dict[str, object]] = r.json()["jobs"]
    return jobs


async def test_jobs_past_the_quota_are_parked_then_admitted_as_others_end(
    settings: Settings, api_key: str, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    fair = settings.model_copy(update={"fair_share_quota": 2})
    async with api_client(fair, api_key) as client:
        jobs = await _submit_five(client)
        assert [job["parked"] for job in jobs] == [False, False, True, True, True]
        assert redis_conn.llen("rq:queue:default") == 2  # the rest wait in the ledger
        metrics = (await client.get("/metrics")).text
        assert 'jobsvc_jobs_parked{queue="default"} 3.0' in metrics
        assert 'jobsvc_tenant_backlog{owner="tester"} 5.0' in metrics

        run_worker_burst(fair)  # each outcome admits the next parked job

        done = [(await client.get(f"/jobs/{job['id']}")).json() for job in jobs]
        assert all(job["status"] == "finished" and not job["parked"] for job in done)
        starts = [ledger_rows.events(str(job["id"]))[1]["at"] for job in jobs]
        assert starts == sorted(starts)  # in submit order


async def test_a_weight_scales_the_quota(
    settings: Settings, api_key: str, redis_conn: Redis
) -> None:
    weighted = settings.model_copy(
        update={"fair_share_quota": 2, "tenant_weights": {"tester": 2.0}}
    )
    async with api_client(weighted, api_key) as client:
        jobs = await _submit_five(client)
    assert [job["parked"] for job in jobs] == [False] * 4 + [True]


async def test_a_canceled_job_frees_a_slot_the_reconciler_fills(
    settings: Settings, api_key: str, redis_conn: Redis
) -> None:
    fair = settings.model_copy(update={"fair_share_quota": 2})
    async with api_client(fair, api_key) as client:
        jobs = await _submit_five(client)
        parked = await client.post(f"/jobs/{jobs[4]['id']}/cancel")
        assert parked.json()["parked"] is False and parked.json()["status"] == "canceled"
        assert run_reconcile_pass(fair).released == 0  # no room yet
        await client.post(f"/jobs/{jobs[0]['id']}/cancel")
        assert run_reconcile_pass(fair).released == 1
        admitted = (await client.get(f"/jobs/{jobs[2]['id']}")).json()
        assert admitted["parked"] is False and admitted["status"] == "queued"


def test_weights_are_read_as_owner_equals_weight() -> None:
    parsed = Settings(fair_share_quota=10, tenant_weights="acme=3, trial=0.5")  # type: ignore[arg-type]
    assert parsed.tenant_weights == {"acme": 3.0, "trial": 0.5}
    assert (parsed.fair_quota("acme"), parsed.fair_quota("trial"), parsed.fair_quota("x")) == (
        30,
        5,
        10,
    )
    assert Settings().fair_quota("acme") == 0  # off
    with pytest.raises(ValueError, match="weight"):
        Settings(tenant_weights="acme=0")  # type: ignore[arg-type]
