"""Soak: three workers and two reconcilers under 500 mixed jobs (echo, failures with
retries, sleeps canceled mid-way, delayed jobs). Every job ends final, within its
attempts, through legal transitions only, and never runs two attempts at once."""

import random
import time
from collections import defaultdict
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import text

from tests.e2e.conftest import Stack
from tests.faults.conftest import Private
from tests.service.test_transitions import LEGAL
from tests.support import Ledger

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FINAL = ("finished", "failed", "canceled")


def test_soak(world: tuple[Stack, Ledger, Private]) -> None:
    stack, ledger_rows, private = world
    rng = random.Random(2026)
    stack.worker("w1")
    stack.worker("w2")
    stack.worker("w3", simple=True)
    stack.reconciler("r1")
    stack.reconciler("r2")

    bodies: list[dict[str, Any]] = (
        [{"task": "echo", "args": {"value": i}} for i in range(250)]
        + [
            {"task": "fail", "args": {"message": f"f{i}"}, "max_attempts": 3, "backoff_s": 0.05}
            for i in range(100)
        ]
        + [{"task": "sleep", "args": {"seconds": rng.uniform(0.05, 0.3)}} for _ in range(100)]
        + [
            {"task": "echo", "args": {"value": f"d{i}"}, "delay_s": rng.uniform(0.5, 2.0)}
            for i in range(50)
        ]
    )
    rng.shuffle(bodies)
    submitted: dict[str, dict[str, Any]] = {}
    for body in bodies:
        r = stack.http.post("/jobs", json=body)
        assert r.status_code == 202, r.text
        submitted[r.json()["id"]] = body
    sleeps = [job_id for job_id, b in submitted.items() if b["task"] == "sleep"]
    cancels = {job_id: stack.http.post(f"/jobs/{job_id}/cancel") for job_id in sleeps[::2]}
    assert {r.status_code for r in cancels.values()} <= {200, 202, 409}

    deadline = time.monotonic() + 180
    while ledger_rows.count("status NOT IN ('finished', 'failed', 'canceled')") > 0:
        assert time.monotonic() < deadline, "jobs left unfinished"
        time.sleep(0.5)

    rows = _rows(private)
    assert len(rows) == 500
    for job_id, row in rows.items():
        body = submitted[job_id]
        assert row["status"] in FINAL
        assert 0 <= row["attempt"] <= row["max_attempts"]
        if body["task"] == "echo":
            assert row["status"] == "finished", row
            assert row["result"] == body["args"]["value"]
        if body["task"] == "fail":
            assert row["status"] == "failed" and row["attempt"] == 3, row
        if "delay_s" in body:
            assert row["started_at"] >= row["run_at"]  # never early
        if job_id in cancels and cancels[job_id].status_code != 409:
            assert row["status"] == "canceled"

    for job_id, statuses in _histories(private).items():
        for transition in pairwise([None, *statuses]):
            assert transition in LEGAL, (job_id, statuses)
        # one attempt at a time: every start is closed before the next one
        for a, b in pairwise(statuses):
            assert (a, b) != ("started", "started"), (job_id, statuses)
        assert statuses.count("started") <= rows[job_id]["max_attempts"]


def _rows(private: Private) -> dict[str, dict[str, Any]]:
    with private.engine.connect() as conn:
        result = conn.execute(text("SELECT * FROM jobs")).mappings()
        return {str(r["id"]): dict(r) for r in result}


def _histories(private: Private) -> dict[str, list[str]]:
    histories: dict[str, list[str]] = defaultdict(list)
    with private.engine.connect() as conn:
        events = conn.execute(text("SELECT job_id, status FROM job_events ORDER BY id"))
        for job_id, status in events:
            histories[str(job_id)].append(status)
    return histories
