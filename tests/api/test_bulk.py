"""`POST /jobs/cancel` and `POST /jobs/retry`: bulk operations by `GET /jobs`' filters."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from service.settings import Settings
from tests.support import Ledger, api_client, make_key, run_worker_burst


async def _submit(client: httpx.AsyncClient, task: str, **fields: Any) -> str:
    r = await client.post("/jobs", json={"task": task, **fields})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


async def test_a_dry_run_counts_and_shows_without_changing(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    for i in range(12):
        await _submit(client, "echo", args={"value": i}, delay_s=600)

    r = await client.post("/jobs/cancel", json={"task": "echo", "dry_run": True})

    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["matched"], out["affected"], out["dry_run"]) == (12, 0, True)
    assert len(out["sample"]) == 10 and all(j["status"] == "scheduled" for j in out["sample"])
    assert ledger_rows.count("status = 'canceled'") == 0


async def test_cancel_by_filter_names_the_operation_in_each_event(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    echoes = [await _submit(client, "echo", delay_s=600) for _ in range(5)]
    sleeper = await _submit(client, "sleep", args={"seconds": 1}, delay_s=600)

    out = (await client.post("/jobs/cancel", json={"task": "echo"})).json()

    assert (out["matched"], out["affected"]) == (5, 5)
    assert all(ledger_rows.row(j)["status"] == "canceled" for j in echoes)  # type: ignore[index]
    assert ledger_rows.row(sleeper)["status"] == "scheduled"  # type: ignore[index]
    last = ledger_rows.events(echoes[0])[-1]
    assert last["detail"] == {"by": "client", "action": "cancel", "bulk": out["operation"]}


async def test_retry_what_failed_in_the_last_hour_a_few_at_a_time(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    failed = [await _submit(client, "fail", args={"message": "x"}) for _ in range(5)]
    run_worker_burst(settings)
    with sql_engine.begin() as conn:  # one of them failed long ago
        conn.execute(
            text("UPDATE jobs SET created_at = now() - interval '2 hours' WHERE id = :id"),
            {"id": failed[0]},
        )
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    where = {"status": "failed", "created_after": hour_ago}

    first = (await client.post("/jobs/retry", json={**where, "limit": 3})).json()
    second = (await client.post("/jobs/retry", json={**where, "limit": 3})).json()

    assert (first["matched"], first["affected"]) == (4, 3)
    assert (second["matched"], second["affected"]) == (1, 1)
    run_worker_burst(settings)
    attempts = sorted(ledger_rows.row(j)["attempt"] for j in failed)  # type: ignore[index]
    assert attempts == [1, 2, 2, 2, 2]
    retried = [e for e in ledger_rows.events(failed[1]) if e["detail"].get("bulk")]
    assert [e["status"] for e in retried] == ["queued"]


async def test_another_clients_jobs_are_out_of_reach_and_an_admin_may_narrow(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    mine = await _submit(client, "echo", delay_s=600)
    async with api_client(settings, make_key(sql_engine, "other")) as other:
        theirs = await _submit(other, "echo", delay_s=600)
    async with api_client(settings, make_key(sql_engine, "ops", admin=True)) as admin:
        dry = (await admin.post("/jobs/cancel", json={"all": True, "dry_run": True})).json()
        narrowed = (await admin.post("/jobs/cancel", json={"owner": "other"})).json()

    assert dry["matched"] == 2
    assert narrowed["affected"] == 1
    assert ledger_rows.row(theirs)["status"] == "canceled"  # type: ignore[index]
    assert ledger_rows.row(mine)["status"] == "scheduled"  # type: ignore[index]
    refused = await client.post("/jobs/cancel", json={"owner": "other"})
    assert refused.status_code == 422 and "admin" in refused.text


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/jobs/cancel", {"status": "finished"}, "final"),
        ("/jobs/retry", {"status": "queued"}, "only failed or canceled"),
        ("/jobs/cancel", {"all": True, "limit": 10**6}, "JOBS_BULK_LIMIT"),
        ("/jobs/retry", {"limit": 0}, "greater than or equal to 1"),
        ("/jobs/cancel", {"status": "lost"}, "status"),
        ("/jobs/cancel", {"created_after": "yesterday"}, "created_after"),
        ("/jobs/retry", {"everything": True}, "everything"),
        ("/jobs/cancel", {}, "no filter"),
        ("/jobs/retry", {"dry_run": True, "limit": 5}, "no filter"),
        ("/jobs/cancel", {"all": False}, "no filter"),
        ("/jobs/cancel", {"all": True, "task": "echo"}, "filters are given (task)"),
    ],
)
async def test_bad_bulk_requests_are_422(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], needle: str
) -> None:
    await _submit(client, "echo", delay_s=600)

    r = await client.post(path, json=body)

    assert r.status_code == 422 and needle in r.text


async def test_all_on_purpose_cancels_every_job_and_no_filter_changes_none(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    await _submit(client, "echo", delay_s=600)
    await _submit(client, "sleep", args={"seconds": 1}, delay_s=600)

    refused = await client.post("/jobs/cancel", json={})
    assert refused.status_code == 422 and ledger_rows.count("status = 'canceled'") == 0
    assert 'or send "all": true' in refused.json()["detail"]

    done = (await client.post("/jobs/cancel", json={"all": True})).json()

    assert (done["matched"], done["affected"]) == (2, 2)
    assert ledger_rows.count("status = 'canceled'") == 2
