"""Group commit: concurrent single submits recorded by one insert and enqueued by one
pipeline, each answered as if it had been alone."""

import asyncio

import httpx
from redis import Redis
from sqlalchemy import Engine

from service import metrics
from service.settings import Settings
from tests.support import Ledger, api_client, make_key

ECHO = {"task": "echo", "args": {"value": 1}}


def groups_seen() -> tuple[float, float]:
    """(groups written, submits in them) so far in this process."""
    count = total = 0.0
    for family in metrics.SUBMIT_GROUP_SIZE.collect():
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


async def test_concurrent_submits_share_groups_and_each_gets_its_own_job(
    client: httpx.AsyncClient, ledger_rows: Ledger, redis_conn: Redis
) -> None:
    groups, submits = groups_seen()
    replies = await asyncio.gather(
        *(client.post("/jobs", json={"task": "echo", "args": {"value": i}}) for i in range(64))
    )

    assert {r.status_code for r in replies} == {202}
    ids = [r.json()["id"] for r in replies]
    assert len(set(ids)) == 64
    assert [r.json()["args"]["value"] for r in replies] == list(range(64))  # each its own
    assert all(r.json()["enqueued_at"] for r in replies)  # answered once handed to RQ
    assert ledger_rows.count() == 64
    assert ledger_rows.count("status = 'queued'") == 64
    assert redis_conn.llen("rq:queue:default") == 64
    for job_id in ids[:5]:
        assert ledger_rows.statuses(job_id) == ["queued"]
    more_groups, more_submits = groups_seen()
    assert more_submits - submits == 64
    assert more_groups - groups < 64  # some submits were written together


async def test_idempotency_keys_keep_their_meaning_inside_a_group(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    same = {"task": "echo", "args": {"value": "order 17"}}
    other = {"task": "echo", "args": {"value": "order 18"}}
    key = {"Idempotency-Key": "order-17"}

    replies = await asyncio.gather(
        *(client.post("/jobs", json=same, headers=key) for _ in range(8)),
        *(client.post("/jobs", json=ECHO) for _ in range(8)),
    )
    conflicting = await asyncio.gather(
        *(client.post("/jobs", json=other, headers=key) for _ in range(4)),
        *(client.post("/jobs", json=ECHO) for _ in range(4)),
    )

    keyed, plain = replies[:8], replies[8:]
    assert sorted(r.status_code for r in keyed) == [200] * 7 + [202]
    assert len({r.json()["id"] for r in keyed}) == 1
    assert {r.status_code for r in plain} == {202}
    assert [r.status_code for r in conflicting] == [409] * 4 + [202] * 4  # alone refused
    assert ledger_rows.count() == 1 + 8 + 4


async def test_clients_in_one_group_keep_their_own_keys(
    client: httpx.AsyncClient, ledger_rows: Ledger, sql_engine: Engine, settings: Settings
) -> None:
    key = {"Idempotency-Key": "nightly"}
    async with api_client(settings, make_key(sql_engine, "other")) as other:
        mine, theirs = await asyncio.gather(
            asyncio.gather(*(client.post("/jobs", json=ECHO, headers=key) for _ in range(4))),
            asyncio.gather(*(other.post("/jobs", json=ECHO, headers=key) for _ in range(4))),
        )

    assert len({r.json()["id"] for r in mine}) == 1
    assert len({r.json()["id"] for r in theirs}) == 1
    assert mine[0].json()["id"] != theirs[0].json()["id"]  # one job per client and key
    assert ledger_rows.count() == 2
