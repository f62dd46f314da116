"""Tasks are run at least once: a rerun of the same job must not repeat its effects."""

import httpx
from sqlalchemy import Engine, text

from service.settings import Settings
from tests.support import Ledger, run_worker_burst


async def test_a_rerun_of_record_analytics_inserts_nothing_twice(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    events = [{"name": "a"}, {"name": "b"}]
    job_id = (
        await client.post("/jobs", json={"task": "record_analytics", "args": {"events": events}})
    ).json()["id"]
    run_worker_burst(settings)
    with sql_engine.begin() as conn:  # as if its outcome had been lost after the insert
        conn.execute(text("UPDATE jobs SET status = 'failed' WHERE id = :id"), {"id": job_id})
    assert (await client.post(f"/jobs/{job_id}/retry")).status_code == 202

    run_worker_burst(settings)

    row = ledger_rows.row(job_id)
    assert row is not None and row["status"] == "finished" and row["attempt"] == 2
    assert row["result"] == {"received": 2, "inserted": 0}
    with sql_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM analytics_events")).scalar_one() == 2
