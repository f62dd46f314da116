"""`/schedules`: a client's cron schedules through the API, fired by reconciler passes
(in-process; the runs with real reconciler processes are in tests/e2e/test_schedules.py)."""

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from service.settings import Settings
from tests.support import Ledger, api_client, make_key, run_reconcile_pass

NIGHTLY = {
    "name": "nightly-report",
    "cron": "0 3 * * *",
    "timezone": "Europe/Paris",
    "task": "generate_report",
    "args": {"format": "json"},
}


async def _create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await client.post("/schedules", json={**NIGHTLY, **fields})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _miss(engine: Engine, schedule_id: str, hours: float) -> None:
    """As if the reconcilers had been down: its first unfired tick `hours` ago."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE schedules SET next_fire_at = date_trunc('hour', now())"
                " - make_interval(secs => :s) WHERE id = :id"
            ),
            {"s": hours * 3600, "id": schedule_id},
        )


async def test_a_schedule_is_created_shown_and_listed(client: httpx.AsyncClient) -> None:
    created = await _create(client)

    assert created["name"] == "nightly-report" and created["catch_up"] == "latest"
    assert created["description"] == "At 03:00 every day"
    local = [t[11:16] for t in created["next_fires"]]  # in UTC: 02:00 or 01:00 (summer)
    assert len(local) == 5 and set(local) <= {"02:00", "01:00"}
    assert created["last_jobs"] == [] and created["paused"] is False
    shown = (await client.get(f"/schedules/{created['id']}")).json()
    assert shown["next_fire_at"] == created["next_fire_at"]
    listed = (await client.get("/schedules")).json()
    assert [s["id"] for s in listed] == [created["id"]]


async def test_a_due_schedule_fires_one_job_of_its_owner_per_tick(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    hourly = await _create(client, name="hourly", cron="0 * * * *", timezone="UTC")
    _miss(sql_engine, hourly["id"], 0)  # the tick of this hour is due

    first = run_reconcile_pass(settings)
    again = run_reconcile_pass(settings)

    assert first.scheduled == 1 and again.scheduled == 0
    [job] = (await client.get("/jobs", params={"task": "generate_report"})).json()["items"]
    assert job["meta"]["schedule"] == "hourly" and job["status"] == "queued"
    assert job["args"]["format"] == "json"
    shown = (await client.get(f"/schedules/{hourly['id']}")).json()
    assert [j["id"] for j in shown["last_jobs"]] == [job["id"]]
    assert shown["last_jobs"][0]["scheduled_for"] == shown["last_fired_at"]
    assert shown["next_fire_at"] > shown["last_fired_at"]


@pytest.mark.parametrize(("policy", "fired"), [("all", 5), ("latest", 1), ("none", 0)])
async def test_catch_up_after_downtime(
    client: httpx.AsyncClient,
    settings: Settings,
    sql_engine: Engine,
    ledger_rows: Ledger,
    policy: str,
    fired: int,
) -> None:
    made = await _create(client, name=f"h-{policy}", cron="0 * * * *", catch_up=policy)
    _miss(sql_engine, made["id"], 4)  # ticks 4, 3, 2, 1 and 0 hours ago were missed

    run_reconcile_pass(settings)

    assert ledger_rows.count("task = 'generate_report'") == fired
    shown = (await client.get(f"/schedules/{made['id']}")).json()
    assert len(shown["last_jobs"]) == fired


async def test_pause_resume_and_a_new_cron(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    made = await _create(client, cron="0 * * * *", catch_up="all")

    paused = await client.patch(f"/schedules/{made['id']}", json={"paused": True})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["next_fires"] == []
    _miss(sql_engine, made["id"], 3)
    assert run_reconcile_pass(settings).scheduled == 0  # a paused schedule fires nothing

    resumed = (await client.patch(f"/schedules/{made['id']}", json={"paused": False})).json()
    assert resumed["next_fire_at"] > made["created_at"]  # the ticks of the pause skipped
    assert run_reconcile_pass(settings).scheduled == 0

    moved = await client.patch(f"/schedules/{made['id']}", json={"cron": "30 4 * * 1"})
    assert moved.status_code == 200
    assert moved.json()["description"] == "At 04:30 on Monday"
    assert all(t[11:16] in ("03:30", "02:30") for t in moved.json()["next_fires"])
    assert ledger_rows.count() == 0


async def test_a_schedule_is_its_owners_alone(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine
) -> None:
    made = await _create(client)
    async with api_client(settings, make_key(sql_engine, "other")) as other:
        assert (await other.get(f"/schedules/{made['id']}")).status_code == 404
        assert (
            await other.patch(f"/schedules/{made['id']}", json={"paused": True})
        ).status_code == 404
        assert (await other.delete(f"/schedules/{made['id']}")).status_code == 404
        assert (await other.get("/schedules")).json() == []
        theirs = await other.post("/schedules", json=NIGHTLY)  # the same name is theirs to use
        assert theirs.status_code == 201

    assert (await client.delete(f"/schedules/{made['id']}")).status_code == 204
    assert (await client.get(f"/schedules/{made['id']}")).status_code == 404


async def test_the_retention_clean_up_is_a_system_schedule(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine
) -> None:
    run_reconcile_pass(settings)

    async with api_client(settings, make_key(sql_engine, "root", admin=True)) as admin:
        listed = (await admin.get("/schedules")).json()
    [cleanup] = [s for s in listed if s["owner"] == "system"]
    assert cleanup["name"] == "cleanup" and cleanup["task"] == "cleanup"
    assert cleanup["cron"] == settings.cleanup_cron
    assert (await client.get("/schedules")).json() == []  # not a client's to see


@pytest.mark.parametrize(
    ("fields", "status", "needle"),
    [
        ({"cron": "0 3 * *"}, 422, "has 4 fields"),
        ({"cron": "61 3 * * *"}, 422, "is not valid"),
        ({"cron": "*/30 * * * * *"}, 422, "JOBS_SCHEDULE_MIN_INTERVAL_S"),
        ({"timezone": "Europe/Atlantis"}, 422, "IANA time zone"),
        ({"task": "no_such_task"}, 422, "unknown task"),
        ({"task": "deliver_callback", "args": {}}, 422, "unknown task"),
        ({"args": {"format": "pdf"}}, 422, "format"),
        ({"queue": "nowhere"}, 422, "unknown queue"),
        ({"catch_up": "some"}, 422, "catch_up"),
        ({"name": "two words"}, 422, "name"),
        ({"every": "day"}, 422, "every"),
    ],
)
async def test_bad_schedules_are_refused(
    client: httpx.AsyncClient, fields: dict[str, Any], status: int, needle: str
) -> None:
    r = await client.post("/schedules", json={**NIGHTLY, **fields})

    assert r.status_code == status, r.text
    assert needle in r.text
    assert (await client.get("/schedules")).json() == []


async def test_names_are_unique_per_client_and_the_count_is_capped(
    client: httpx.AsyncClient, settings: Settings, api_key: str
) -> None:
    made = await _create(client)
    other = await _create(client, name="other")

    assert (await client.post("/schedules", json=NIGHTLY)).status_code == 409
    renamed = await client.patch(f"/schedules/{other['id']}", json={"name": made["name"]})
    assert renamed.status_code == 409
    async with api_client(settings.model_copy(update={"max_schedules": 2}), api_key) as capped:
        over = await capped.post("/schedules", json={**NIGHTLY, "name": "third"})
    assert over.status_code == 422 and "JOBS_MAX_SCHEDULES" in over.text


async def test_every_new_field_is_documented_with_an_example(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    fields = {
        "EchoJob": [
            "depends_on",
            "on_parent_failure",
            "unique_for_s",
            "unique_key",
            "unique_states",
        ],
        "BatchJobIn": ["ref", "depends_on"],
        "BatchIn": ["on_complete"],
        "ScheduleIn": ["name", "cron", "timezone", "task", "args", "queue", "catch_up", "paused"],
        "SchedulePatch": ["name", "cron", "timezone", "paused", "catch_up"],
    }
    for model, names in fields.items():
        properties = schemas[model]["properties"]
        for name in names:
            assert properties[name].get("examples"), f"{model}.{name}"
