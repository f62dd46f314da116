"""Priorities through the API: a job's priority puts it on its queue's RQ list of that
priority, and a worker pops the highest first (a burst worker: RQ's non-blocking pop)."""

import httpx
from redis import Redis

from service import priorities
from service.settings import Settings
from tests.support import Ledger, run_worker_burst


async def _submit(client: httpx.AsyncClient, value: int, **fields: object) -> str:
    r = await client.post("/jobs", json={"task": "echo", "args": {"value": value}, **fields})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


async def test_each_priority_is_a_list_and_the_highest_is_popped_first(
    client: httpx.AsyncClient, settings: Settings, redis_conn: Redis, ledger_rows: Ledger
) -> None:
    low = [await _submit(client, n) for n in range(3)]
    mid = await _submit(client, 10, priority=4)
    high = await _submit(client, 20, priority=9)
    assert (await client.get(f"/jobs/{high}")).json()["priority"] == 9
    assert redis_conn.lrange("rq:queue:default@p9", 0, -1) == [high.encode()]
    assert redis_conn.llen("rq:queue:default") == 3

    run_worker_burst(settings.model_copy(update={"priority_low_share": 0}), "default")

    order = sorted([*low, mid, high], key=lambda j: ledger_rows.events(j)[1]["at"])
    assert order == [high, mid, *low]


async def test_a_priority_outside_0_to_9_is_refused(client: httpx.AsyncClient) -> None:
    for bad in (-1, 10, "high"):
        r = await client.post("/jobs", json={"task": "echo", "priority": bad})
        assert r.status_code == 422 and "priority" in r.text


def test_lists_are_listened_to_highest_first_and_lowest_first_by_share() -> None:
    names = priorities.listening(["a", "b"])
    assert names[:3] == ["a@p9", "a@p8", "a@p7"] and names[9] == "a" and names[10] == "b@p9"
    assert {priorities.queue_of(n) for n in names} == {"a", "b"}
    assert priorities.queue_of("odd@p10") == "odd@p10"  # not a priority's list
    low = priorities.lowest_first(names)
    assert low[:2] == ["a", "a@p1"] and low[10:12] == ["b", "b@p1"]
