"""Jobs that wait for jobs: `depends_on`, batch refs, `on_complete`, and what the ledger
does when a parent ends (in-process API and worker; the end-to-end runs with real
processes are in tests/e2e/test_workflows.py)."""

import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from service import dependencies, ledger
from service.ledger_writer import LedgerWriter
from service.settings import Settings
from tests.support import Ledger, api_client, make_key, run_reconcile_pass, run_worker_burst

pytestmark = pytest.mark.usefixtures("test_tasks")


async def _job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await client.get(f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def _submit(client: httpx.AsyncClient, task: str, **fields: Any) -> dict[str, Any]:
    r = await client.post("/jobs", json={"task": task, **fields})
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    return job


CHAIN = {
    "jobs": [
        {"ref": "c", "task": "add_parents", "args": {"value": 100}, "depends_on": ["b"]},
        {"ref": "a", "task": "add_parents", "args": {"value": 1}},
        {"ref": "b", "task": "add_parents", "args": {"value": 10}, "depends_on": ["a"]},
    ]
}

DIAMOND = {
    "jobs": [
        {"ref": "left", "task": "echo"},
        {"ref": "right", "task": "echo"},
        {"ref": "bottom", "task": "echo", "depends_on": ["left", "right"]},
    ]
}


async def test_a_chain_waits_runs_in_order_and_passes_results(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    r = await client.post("/jobs/batch", json=CHAIN)

    assert r.status_code == 202, r.text
    out = r.json()
    c, a, b = out["jobs"]
    assert out["refs"] == {"c": c["id"], "a": a["id"], "b": b["id"]}
    assert (a["status"], b["status"], c["status"]) == ("queued", "waiting", "waiting")
    assert b["depends_on"] == [a["id"]] and b["pending_parents"] == 1
    assert b["on_parent_failure"] == "cancel"
    assert ledger_rows.count("status = 'waiting'") == 2

    run_worker_burst(settings)

    a, b, c = [await _job(client, j["id"]) for j in (a, b, c)]
    assert [j["status"] for j in (a, b, c)] == ["finished"] * 3
    assert (a["result"], b["result"], c["result"]) == (1, 11, 111)
    assert a["finished_at"] <= b["started_at"] and b["finished_at"] <= c["started_at"]
    assert c["pending_parents"] == 0
    assert ledger_rows.statuses(c["id"]) == ["waiting", "queued", "started", "finished"]
    released = ledger_rows.events(c["id"])[1]["detail"]
    assert released == {"by": "dependency", "parent": b["id"]}


async def test_a_failed_parent_cancels_its_children_unless_they_run_anyway(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    batch = {
        "jobs": [
            {"ref": "bad", "task": "fail", "args": {"message": "boom"}, "max_attempts": 1},
            {"ref": "next", "task": "echo", "depends_on": ["bad"]},
            {"ref": "after_next", "task": "echo", "depends_on": ["next"]},
            {"ref": "cleanup", "task": "echo", "depends_on": ["bad"], "on_parent_failure": "run"},
        ]
    }
    r = await client.post("/jobs/batch", json=batch)
    assert r.status_code == 202, r.text
    bad, nxt, after_next, cleanup = r.json()["jobs"]

    run_worker_burst(settings)

    bad, nxt, after_next, cleanup = [
        await _job(client, j["id"]) for j in (bad, nxt, after_next, cleanup)
    ]
    assert bad["status"] == "failed"
    assert nxt["status"] == "canceled" and nxt["attempt"] == 0
    assert nxt["error"]["type"] == "dependency_failed"
    assert bad["id"] in nxt["error"]["message"] and "failed" in nxt["error"]["message"]
    assert after_next["status"] == "canceled"  # the cancel runs down the chain
    assert after_next["error"]["type"] == "dependency_failed"
    assert cleanup["status"] == "finished"
    assert ledger_rows.statuses(nxt["id"]) == ["waiting", "canceled"]


async def test_a_child_of_jobs_already_ended_starts_as_they_decide(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    done = await _submit(client, "echo", args={"value": 1})
    bad = await _submit(client, "fail", args={"message": "no"}, max_attempts=1)
    run_worker_burst(settings)

    ready = await _submit(client, "echo", depends_on=[done["id"]])
    doomed = await _submit(client, "echo", depends_on=[done["id"], bad["id"]])
    anyway = await _submit(client, "echo", depends_on=[bad["id"]], on_parent_failure="run")

    assert ready["status"] == "queued"
    assert doomed["status"] == "canceled" and doomed["error"]["type"] == "dependency_failed"
    assert anyway["status"] == "queued"
    run_worker_burst(settings)
    assert (await _job(client, ready["id"]))["status"] == "finished"
    assert (await _job(client, anyway["id"]))["status"] == "finished"


async def test_canceling_a_parent_releases_the_children_that_run_anyway(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Any
) -> None:
    parent = await _submit(client, "echo", delay_s=3600)
    canceled_with = await _submit(client, "echo", depends_on=[parent["id"]])
    runs = await _submit(client, "echo", depends_on=[parent["id"]], on_parent_failure="run")

    r = await client.post(f"/jobs/{parent['id']}/cancel")

    assert r.status_code == 200, r.text
    assert (await _job(client, canceled_with["id"]))["status"] == "canceled"
    assert (await _job(client, runs["id"]))["status"] == "queued"
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [runs["id"].encode()]  # at once
    run_worker_burst(settings)
    assert (await _job(client, runs["id"]))["status"] == "finished"


async def test_a_retried_parent_does_not_run_its_finished_children_again(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    parent = await _submit(client, "fail", args={"message": "once"}, max_attempts=1)
    child = await _submit(client, "echo", depends_on=[parent["id"]], on_parent_failure="run")
    run_worker_burst(settings)
    assert (await _job(client, child["id"]))["status"] == "finished"

    assert (await client.post(f"/jobs/{parent['id']}/retry")).status_code == 202
    run_worker_burst(settings)

    assert (await _job(client, parent["id"]))["attempt"] == 2
    assert ledger_rows.statuses(child["id"]) == ["waiting", "queued", "started", "finished"]


async def test_children_are_listed_by_parent(client: httpx.AsyncClient) -> None:
    parent = await _submit(client, "echo", delay_s=3600)
    kids = [await _submit(client, "echo", depends_on=[parent["id"]]) for _ in range(3)]
    await _submit(client, "echo")

    r = await client.get("/jobs", params={"parent": parent["id"]})

    assert r.status_code == 200
    assert sorted(j["id"] for j in r.json()["items"]) == sorted(k["id"] for k in kids)
    assert all(j["status"] == "waiting" for j in r.json()["items"])


async def test_a_repeated_workflow_gives_back_the_same_jobs(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    batch = {
        "jobs": [
            {"ref": "a", "task": "echo", "idempotency_key": "wf-a"},
            {"ref": "b", "task": "echo", "depends_on": ["a"], "idempotency_key": "wf-b"},
        ]
    }
    first = await client.post("/jobs/batch", json=batch)
    again = await client.post("/jobs/batch", json=batch)

    assert first.status_code == again.status_code == 202
    assert first.json()["refs"] == again.json()["refs"]
    assert ledger_rows.count() == 2
    # a new child of the first job's key depends on that job
    more = {"jobs": [*batch["jobs"][:1], {"task": "echo", "depends_on": ["a"]}]}
    r = await client.post("/jobs/batch", json=more)
    assert r.json()["jobs"][1]["depends_on"] == [first.json()["refs"]["a"]]


async def test_on_complete_waits_for_the_whole_batch(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    batch = {
        "jobs": [{"task": "echo", "args": {"value": i}} for i in range(5)]
        + [{"task": "fail", "args": {"message": "one fails"}, "max_attempts": 1}],
        "on_complete": {"task": "add_parents", "args": {"value": 1000}},
    }
    r = await client.post("/jobs/batch", json=batch)
    assert r.status_code == 202, r.text
    out = r.json()
    final = out["on_complete"]
    assert final["status"] == "waiting" and final["pending_parents"] == 6
    assert final["depends_on"] == [j["id"] for j in out["jobs"]]
    assert final["on_parent_failure"] == "run"

    run_worker_burst(settings)

    done = await _job(client, final["id"])
    assert done["status"] == "finished"
    assert done["result"] == 1000 + sum(range(5))  # the echoes' results; the failure adds none


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"task": "echo", "depends_on": ["not-an-id"]}, "is not a job id"),
        ({"task": "echo", "depends_on": ["00000000-0000-4000-8000-000000000001"]}, "not yours"),
        ({"task": "echo", "on_parent_failure": "run"}, "give both"),
        ({"task": "echo", "depends_on": ["x"], "on_parent_failure": "later"}, "on_parent_failure"),
    ],
)
async def test_bad_dependencies_are_422_and_record_nothing(
    client: httpx.AsyncClient, ledger_rows: Ledger, body: dict[str, Any], needle: str
) -> None:
    r = await client.post("/jobs", json=body)

    assert r.status_code == 422, r.text
    assert needle in r.text
    assert ledger_rows.count() == 0


async def test_too_many_parents_and_repeated_parents_are_422(
    client: httpx.AsyncClient, settings: Settings, ledger_rows: Ledger
) -> None:
    parent = await _submit(client, "echo", delay_s=60)
    many = [parent["id"]] * (settings.max_depends_on + 1)

    over = await client.post("/jobs", json={"task": "echo", "depends_on": many})
    twice = await client.post("/jobs", json={"task": "echo", "depends_on": many[:2]})

    assert over.status_code == 422 and "JOBS_MAX_DEPENDS_ON" in over.text
    assert twice.status_code == 422 and "twice" in twice.text
    assert ledger_rows.count() == 1


async def test_another_clients_job_cannot_be_a_parent(
    client: httpx.AsyncClient, settings: Settings, sql_engine: Engine, ledger_rows: Ledger
) -> None:
    async with api_client(settings, make_key(sql_engine, "other")) as other:
        theirs = await _submit(other, "echo", delay_s=60)

    r = await client.post("/jobs", json={"task": "echo", "depends_on": [theirs["id"]]})

    assert r.status_code == 422
    assert theirs["id"] in r.json()["detail"]
    assert ledger_rows.count() == 1


@pytest.mark.parametrize(
    ("jobs", "needle", "indexes"),
    [
        (
            [
                {"ref": "a", "task": "echo", "depends_on": ["c"]},
                {"ref": "b", "task": "echo", "depends_on": ["a"]},
                {"ref": "c", "task": "echo", "depends_on": ["b"]},
                {"ref": "d", "task": "echo"},
            ],
            "cycle",
            [0, 1, 2],
        ),
        ([{"ref": "a", "task": "echo", "depends_on": ["a"]}], "cycle", [0]),
        ([{"ref": "a", "task": "echo"}, {"ref": "a", "task": "echo"}], "repeats", [1]),
        ([{"task": "echo", "depends_on": ["nobody"]}], "nor the ref", [0]),
        (
            [{"ref": "00000000-0000-4000-8000-000000000001", "task": "echo"}],
            "may not read as a job id",
            [0],
        ),
    ],
)
async def test_bad_workflows_are_422_and_record_nothing(
    client: httpx.AsyncClient,
    ledger_rows: Ledger,
    jobs: list[dict[str, Any]],
    needle: str,
    indexes: list[int],
) -> None:
    r = await client.post("/jobs/batch", json={"jobs": jobs})

    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert sorted(d["index"] for d in detail) == indexes
    assert all(needle in d["detail"] for d in detail)
    assert ledger_rows.count() == 0


async def test_on_complete_may_not_name_its_own_parents(client: httpx.AsyncClient) -> None:
    parent = await _submit(client, "echo")
    batch = {
        "jobs": [{"task": "echo"}],
        "on_complete": {"task": "echo", "depends_on": [parent["id"]]},
    }

    r = await client.post("/jobs/batch", json=batch)

    assert r.status_code == 422 and "on_complete" in r.text


async def test_a_child_released_after_a_long_wait_is_handed_over_once(
    client: httpx.AsyncClient,
    settings: Settings,
    sql_engine: Engine,
    redis_conn: Any,
    ledger_rows: Ledger,
) -> None:
    """Two parents that end at the same instant release their child once; and a child
    recorded long before its release is not taken for lost by the reconciler while its
    hand-over is under way (its wait for Redis counts from the release)."""
    r = await client.post("/jobs/batch", json=DIAMOND)
    assert r.status_code == 202, r.text
    left, right, bottom = (r.json()["refs"][ref] for ref in ("left", "right", "bottom"))
    with sql_engine.begin() as conn:  # the workflow was recorded an hour ago
        conn.execute(text("UPDATE jobs SET created_at = created_at - interval '1 hour'"))
        started = [ledger.claim(conn, job, "w", 60) for job in (left, right)]
    redis_conn.delete("rq:queue:default")  # popped by the workers that claimed them
    ends = threading.Barrier(2)

    def end(row: Any) -> None:
        with sql_engine.begin() as conn:
            ends.wait()
            ledger.finish(conn, row.id, row.attempt, 1)

    threads = [threading.Thread(target=end, args=(row,)) for row in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    run_reconcile_pass(settings)  # between the release and its worker's hand-over
    assert ledger_rows.statuses(bottom) == ["waiting", "queued"]  # released once, kept
    writer = LedgerWriter(settings)
    try:
        dependencies.hand_over_children(writer, redis_conn, settings, started[0].id)
    finally:
        writer.dispose()
    assert ledger_rows.row(bottom)["enqueued_at"] is not None  # type: ignore[index]
    run_reconcile_pass(settings)
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [bottom.encode()]  # once
    run_worker_burst(settings)
    assert ledger_rows.statuses(bottom) == ["waiting", "queued", "started", "finished"]
