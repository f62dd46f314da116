"""Workflows with real processes: the API (uvicorn), several workers of both kinds and a
reconciler, driven over HTTP. Jobs wait for jobs, run in order, each once, and pass their
results along; a batch's `on_complete` job hears when every job of it is done."""

import io
from collections.abc import Callable
from datetime import datetime
from email import message_from_bytes, policy
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import FAST, TEST_TASKS, Inbox, Stack, wait_until
from tests.support import Ledger

pytestmark = pytest.mark.e2e


def _start(stack: Stack, workers: int) -> None:
    stack.workers(workers)
    stack.reconciler()


def _batch(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.http.post("/jobs/batch", json=body)
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    return out


def _add(ref: str, value: int, *parents: str) -> dict[str, Any]:
    """An `add_parents` job of a batch: `value` plus its parents' results."""
    job = {"ref": ref, "task": "add_parents", "args": {"value": value}}
    return {**job, "depends_on": list(parents)} if parents else job


def _event_times(ledger_rows: Ledger, job_id: str, status: str) -> list[datetime]:
    return [e["at"] for e in ledger_rows.events(job_id) if e["status"] == status]


def test_a_chain_of_three_runs_in_order_and_passes_results(
    make_stack: Callable[..., Stack], ledger_rows: Ledger
) -> None:
    stack = make_stack(**TEST_TASKS, **FAST)
    _start(stack, workers=2)
    chain = [_add("fetch", 1), _add("parse", 10, "fetch"), _add("store", 100, "parse")]
    out = _batch(stack, {"jobs": chain})
    fetch, parse, store = (out["refs"][ref] for ref in ("fetch", "parse", "store"))

    last = stack.wait(store)

    assert last["status"] == "finished" and last["result"] == 111
    assert stack.job(parse)["result"] == 11
    for parent, child in ((fetch, parse), (parse, store)):
        [finished] = _event_times(ledger_rows, parent, "finished")
        [started] = _event_times(ledger_rows, child, "started")
        assert finished <= started


def test_diamonds_run_each_node_once_after_both_branches(
    make_stack: Callable[..., Stack], ledger_rows: Ledger
) -> None:
    """25 diamonds (top → left, right → bottom) over four workers: the two branches of a
    diamond often end together, and each bottom is released once, after both, and runs
    once. (A spare delivery by the reconciler, a `queued` event by the reconciler, may
    come on a loaded machine: the claim keeps it from running twice.)"""
    stack = make_stack(**TEST_TASKS, **FAST)
    _start(stack, workers=4)
    jobs: list[dict[str, Any]] = []
    for d in range(25):
        jobs += [
            _add(f"top{d}", 1),
            _add(f"left{d}", 10, f"top{d}"),
            _add(f"right{d}", 100, f"top{d}"),
            _add(f"bottom{d}", 1000, f"left{d}", f"right{d}"),
        ]
    refs = _batch(stack, {"jobs": jobs})["refs"]

    wait_until(lambda: ledger_rows.count("status = 'finished'") == 100, 60, "100 finished")

    assert ledger_rows.count("status <> 'finished'") == 0
    for d in range(25):
        bottom = stack.job(refs[f"bottom{d}"])
        assert bottom["result"] == 1000 + 11 + 101  # each branch saw the top's result
        for node in ("top", "left", "right", "bottom"):
            assert ledger_rows.statuses(refs[f"{node}{d}"]).count("started") == 1
        [started] = _event_times(ledger_rows, refs[f"bottom{d}"], "started")
        for branch in ("left", "right"):
            [finished] = _event_times(ledger_rows, refs[f"{branch}{d}"], "finished")
            assert finished <= started
        events = ledger_rows.events(refs[f"bottom{d}"])
        releases = [e for e in events if e["detail"].get("by") == "dependency"]
        assert [e["status"] for e in releases] == ["queued"]  # released once


def test_a_failed_parent_cancels_one_child_and_releases_the_other(
    make_stack: Callable[..., Stack], ledger_rows: Ledger
) -> None:
    stack = make_stack(**TEST_TASKS, **FAST)
    _start(stack, workers=2)
    out = _batch(
        stack,
        {
            "jobs": [
                {"ref": "charge", "task": "fail", "args": {"message": "card declined"}},
                {"ref": "ship", "task": "echo", "depends_on": ["charge"]},
                {"ref": "release_stock", "task": "echo", "depends_on": ["charge"],
                 "on_parent_failure": "run"},
            ]
        },
    )  # fmt: skip

    release_stock = stack.wait(out["refs"]["release_stock"])
    ship = stack.wait(out["refs"]["ship"])

    assert stack.job(out["refs"]["charge"])["status"] == "failed"
    assert release_stock["status"] == "finished"
    assert ship["status"] == "canceled" and ship["attempt"] == 0
    assert ship["error"]["type"] == "dependency_failed"
    assert "started" not in ledger_rows.statuses(ship["id"])


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color=(200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_the_thumbnail_fan_in_emails_once_all_200_are_done(
    make_stack: Callable[..., Stack], smtp: tuple[Inbox, int], ledger_rows: Ledger
) -> None:
    inbox, port = smtp
    stack = make_stack(**FAST, JOBS_SMTP_PORT=str(port), JOBS_SMTP_FROM="jobs@service.example")
    r = stack.http.post("/jobs/uploads", content=_png(), headers={"content-type": "image/png"})
    assert r.status_code == 201, r.text
    upload_id = r.json()["upload_id"]
    sizes = [[16, 16], [32, 32]]
    out = _batch(
        stack,
        {
            "jobs": [
                {"task": "make_thumbnails", "args": {"upload_id": upload_id, "sizes": sizes}}
                for _ in range(200)
            ],
            "on_complete": {
                "task": "send_email",
                "args": {"to": ["ops@example.com"], "subject": "thumbnails done", "text": "Hi."},
            },
        },
    )
    notify = out["on_complete"]
    assert notify["status"] == "waiting" and notify["pending_parents"] == 200
    _start(stack, workers=3)

    done = stack.wait(notify["id"], timeout=120)

    assert done["status"] == "finished", done
    thumbs = [j["id"] for j in out["jobs"]]
    assert ledger_rows.count("task = 'make_thumbnails' AND status = 'finished'") == 200
    [sent] = _event_times(ledger_rows, notify["id"], "started")
    last_thumb = max(_event_times(ledger_rows, t, "finished")[0] for t in thumbs)
    assert last_thumb <= sent
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["ops@example.com"]
    body = message_from_bytes(envelope.content, policy=policy.default).get_body(("plain",))
    text = body.get_content()  # type: ignore[union-attr]
    assert text.startswith("Hi.")
    assert "sent after 200 jobs: 200 finished" in text
    assert all(t in text for t in thumbs[:100]) and "... and 100 more" in text
