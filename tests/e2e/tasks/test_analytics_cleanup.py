"""`record_analytics` into its table, and `cleanup` by hand and by the reconciler."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.e2e.conftest import Stack, wait_until
from tests.support import Ledger, make_key

pytestmark = pytest.mark.e2e


def test_analytics_events_land_in_one_batch(stack: Stack, sql_engine: Engine) -> None:
    stack.worker("w")
    events = [
        {"name": "signup", "properties": {"plan": "pro"}},
        {"name": "login", "occurred_at": "2026-11-01T08:00:00+00:00"},
        {"name": "login"},
    ]

    job = stack.wait(stack.submit("record_analytics", events=events))

    assert job["status"] == "finished", job
    assert job["result"] == {"received": 3, "inserted": 3}
    with sql_engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    "SELECT seq, owner, name, properties, occurred_at, job_id"
                    " FROM analytics_events ORDER BY seq"
                )
            )
            .mappings()
            .all()
        )
    assert [r["name"] for r in rows] == ["signup", "login", "login"]
    assert rows[0]["properties"] == {"plan": "pro"}
    assert rows[1]["occurred_at"].isoformat() == "2026-11-01T08:00:00+00:00"
    assert {r["owner"] for r in rows} == {"tester"}
    assert {str(r["job_id"]) for r in rows} == {job["id"]}


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "at least 1 item"),
        ([{"name": "x"}] * 1001, "at most 1000 items"),
        ([{"name": ""}], "at least 1 character"),
    ],
    ids=["none", "too-many", "empty-name"],
)
def test_bad_analytics_batches_are_422(
    stack: Stack, ledger_rows: Ledger, events: list[object], message: str
) -> None:
    r = stack.http.post("/jobs", json={"task": "record_analytics", "args": {"events": events}})
    assert r.status_code == 422
    assert message in r.text
    assert ledger_rows.count() == 0


def age(engine: Engine, job_id: str, days: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET finished_at = now() - make_interval(days => :d) WHERE id = :id"),
            {"d": days, "id": job_id},
        )


def test_cleanup_by_hand_removes_only_your_old_jobs(
    stack: Stack, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    stack.worker("w")
    other = {"Authorization": f"Bearer {make_key(sql_engine, 'other')}"}
    theirs = stack.http.post("/jobs", json={"task": "echo"}, headers=other).json()["id"]
    report = stack.wait(stack.submit("generate_report"))
    old_echo = stack.wait(stack.submit("echo", value=1))
    recent = stack.wait(stack.submit("echo", value=2))
    wait_until(lambda: ledger_rows.row(theirs)["status"] == "finished", 10, "their job")  # type: ignore[index]
    for job_id in (report["id"], old_echo["id"], theirs):
        age(sql_engine, job_id, days=10)
    files = Path(os.environ["JOBS_ARTIFACTS_DIR"]) / "jobs" / report["id"]
    assert files.is_dir()

    job = stack.wait(stack.submit("cleanup", older_than_days=5))

    assert job["status"] == "finished" and job["result"]["deleted_jobs"] == 2
    assert ledger_rows.row(report["id"]) is None and ledger_rows.row(old_echo["id"]) is None
    assert ledger_rows.events(old_echo["id"]) == []
    assert not files.exists()
    assert ledger_rows.row(recent["id"]) is not None
    assert ledger_rows.row(theirs) is not None  # another client's job is not yours to delete


def test_the_reconciler_submits_cleanup_for_everyone(
    make_stack: Callable[..., Stack], sql_engine: Engine, ledger_rows: Ledger
) -> None:
    stack = make_stack(JOBS_CLEANUP_CRON="*/2 * * * * *", JOBS_RETENTION_DAYS="1")
    stack.worker("w")
    old = stack.wait(stack.submit("echo", value="old"))
    age(sql_engine, old["id"], days=3)

    stack.reconciler()

    def cleanups() -> list[Any]:
        with sql_engine.connect() as conn:
            sql = text("SELECT owner, status FROM jobs WHERE task = 'cleanup'")
            return list(conn.execute(sql).all())

    wait_until(lambda: ledger_rows.row(old["id"]) is None, 15, "the scheduled cleanup")
    # the job deletes first and is recorded finished a moment later
    wait_until(lambda: ("system", "finished") in cleanups(), 15, "a cleanup job's end")
    assert {owner for owner, _ in cleanups()} == {"system"}
