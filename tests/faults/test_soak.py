"""Chaos soak: mixed jobs through three forking workers, one `--simple` worker and two
reconcilers, while a loop SIGKILLs a random worker (main process and work horse) and
starts another, Redis restarts empty once, and the API's database connections are
terminated once. Every accepted job is in the ledger and ends final, no two attempts of a
job ever run at once (from the tasks' own record, outside the ledger), every transition is
legal, and the API never answers 500.

A short run (300 jobs, a kill every 3 s) is in `make test`; the full one (2,000 jobs, a kill
every 10 s) in `make soak`.
"""

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.conftest import Stack
from tests.faults.conftest import Private
from tests.service.test_transitions import LEGAL
from tests.support import Ledger, QuietHandler, beat_spans, loopback_server

pytestmark = [pytest.mark.e2e, pytest.mark.fault, pytest.mark.slow]

FINAL = ("finished", "failed", "canceled")


@dataclass
class Size:
    jobs: int
    kill_every_s: float
    deadline_s: float
    longest_beat_s: float


@dataclass
class Replies:
    """Every status code the API answered, by request kind."""

    codes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, code: int) -> None:
        with self.lock:
            self.codes[kind].append(code)

    def all(self) -> list[int]:
        return [code for codes in self.codes.values() for code in codes]


@pytest.fixture
def hook_server() -> Iterator[str]:
    """A loopback webhook receiver answering 200."""

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    with loopback_server(Handler) as url:
        yield url


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(
            Size(jobs=300, kill_every_s=3, deadline_s=150, longest_beat_s=0.6), id="short"
        ),
        pytest.param(
            Size(jobs=2000, kill_every_s=10, deadline_s=600, longest_beat_s=1.5),
            id="full",
            marks=pytest.mark.soak,
        ),
    ],
)
def test_chaos_soak(
    world: tuple[Stack, Ledger, Private], tmp_path: Path, hook_server: str, size: Size
) -> None:
    stack, ledger_rows, private = world
    stack.env["JOBS_WEBHOOK_ALLOW_PRIVATE"] = "true"
    rng = random.Random(2026)
    beats = tmp_path / "beats"
    beats.mkdir()
    workers = {"w1": False, "w2": False, "w3": False, "s1": True}  # name -> simple
    for name, simple in workers.items():
        stack.worker(name, simple=simple)
    stack.reconciler("r1")
    stack.reconciler("r2")

    bodies = _bodies(rng, size, beats, hook_server)
    replies = Replies()
    accepted: dict[str, dict[str, Any]] = {}
    accepting = threading.Lock()
    canceled: list[str] = []
    done = threading.Event()

    def submit_all() -> None:
        with ThreadPoolExecutor(4) as pool:
            ids = pool.map(lambda b: _submit(stack, b, replies), bodies)
            for job_id, body in zip(ids, bodies, strict=True):
                if job_id is not None:
                    with accepting:
                        accepted[job_id] = body

    def cancel_running() -> None:
        """Cancel beats while they run (some on the simple worker, which cannot stop them)."""
        while not done.is_set() and len(canceled) < size.jobs // 40:
            with accepting:
                so_far = list(accepted.items())
            for job_id, body in so_far:
                if body["task"] == "beat" and job_id not in canceled and rng.random() < 0.1:
                    r = stack.http.get(f"/jobs/{job_id}")
                    replies.add("poll", r.status_code)
                    if r.status_code == 200 and r.json()["status"] == "started":
                        c = stack.http.post(f"/jobs/{job_id}/cancel")
                        replies.add("cancel", c.status_code)
                        canceled.append(job_id)
                        break
            time.sleep(0.2)

    submitter = threading.Thread(target=submit_all)
    canceller = threading.Thread(target=cancel_running)
    submitter.start()
    canceller.start()
    try:
        kills = _chaos(stack, private, workers, rng, size, submitter)
    finally:
        submitter.join(120)
        done.set()
        canceller.join(30)

    deadline = time.monotonic() + size.deadline_s
    while ledger_rows.count("status NOT IN ('finished', 'failed', 'canceled')") > 0:
        assert time.monotonic() < deadline, _unfinished(private)
        time.sleep(0.5)

    assert kills >= 3
    assert canceled, "no running job was canceled"
    alive = {name: stack.procs[name].poll() for name in workers}
    assert set(alive.values()) == {None}, f"workers quit (Redis restart?): {alive}"
    assert 500 not in replies.all(), dict(replies.codes)
    assert len(accepted) >= size.jobs * 0.95, "most submits were accepted"
    rows = _rows(private)
    assert set(rows) == set(accepted)  # every accepted submit is in the ledger, nothing else
    for job_id, row in rows.items():
        body = accepted[job_id]
        assert row["status"] in FINAL
        assert 0 <= row["attempt"] <= row["max_attempts"], row
        if job_id in canceled:
            continue
        if body["task"] == "echo":
            assert row["status"] == "finished" and row["result"] == body["args"]["value"], row
        if body["task"] == "flaky":
            assert row["status"] == "finished" and row["result"] == row["attempt"] >= 2, row
        if body["task"] in ("beat", "call_webhook"):
            assert row["status"] == "finished", row
    for job_id in canceled:
        assert rows[job_id]["status"] in FINAL

    for job_id, body in accepted.items():  # never two attempts at once, from outside
        path = Path(body["args"].get("path", "/nonexistent"))
        if path.exists():
            spans = sorted(beat_spans(path).values())
            for (_, end), (start, _) in pairwise(spans):
                assert start > end, (job_id, spans)
    for job_id, statuses in _histories(private).items():
        for transition in pairwise([None, *statuses]):
            assert transition in LEGAL, (job_id, statuses)
        assert statuses.count("started") <= rows[job_id]["max_attempts"]


def _bodies(rng: random.Random, size: Size, beats: Path, hook: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    for i in range(size.jobs):
        kind = i % 5
        retries = {"max_attempts": 6, "backoff_s": 0.05}
        if kind in (0, 1):
            bodies.append({"task": "echo", "args": {"value": i}, **retries})
        elif kind == 2:
            seconds = round(rng.uniform(0.1, size.longest_beat_s), 2)
            args = {"seconds": seconds, "path": str(beats / str(i))}
            bodies.append({"task": "beat", "args": args, **retries})
        elif kind == 3:
            bodies.append({"task": "flaky", "args": {"fail_times": 1}, **retries})
        else:
            bodies.append({"task": "call_webhook", "args": {"url": hook, "payload": i}, **retries})
    rng.shuffle(bodies)
    return bodies


def _submit(stack: Stack, body: dict[str, Any], replies: Replies) -> str | None:
    """POST the job, again after a 503 (the database away for a moment); its id if accepted."""
    for _ in range(50):
        try:
            r = stack.http.post("/jobs", json=body)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        replies.add("submit", r.status_code)
        if r.status_code == 202:
            job_id: str = r.json()["id"]
            return job_id
        assert r.status_code == 503, r.text
        time.sleep(float(r.headers.get("Retry-After", "1")) / 4)
    return None


def _chaos(
    stack: Stack,
    private: Private,
    workers: dict[str, bool],
    rng: random.Random,
    size: Size,
    submitter: threading.Thread,
) -> int:
    """While jobs are submitted (and a while after): SIGKILL a random worker every
    `kill_every_s` and start another of its kind; restart Redis empty once; terminate the
    API's database connections once. Returns the number of kills."""
    started = time.monotonic()
    faults = {"redis": started + size.kill_every_s * 0.5, "api-db": started + size.kill_every_s}
    next_kill = started + size.kill_every_s
    generation = 0
    while submitter.is_alive() or generation < 3 or faults:
        now = time.monotonic()
        if now >= next_kill:
            name = rng.choice(sorted(workers))
            stack.kill(name)
            simple = workers.pop(name)
            generation += 1
            replacement = f"{'s' if simple else 'w'}{generation}x"
            workers[replacement] = simple
            stack.worker(replacement, simple=simple)
            next_kill = now + size.kill_every_s
        if "redis" in faults and now >= faults["redis"]:
            del faults["redis"]
            private.redis.stop()
            time.sleep(1)  # workers ride it out (JOBS_LEASE_S / 3); submits are still 202
            private.redis.start()  # no persistence: it comes back empty
        if "api-db" in faults and now >= faults["api-db"]:
            del faults["api-db"]
            with private.engine.connect() as conn:
                ended = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name LIKE 'jobsvc-api%'"
                    )
                ).scalar_one()
            assert ended >= 2  # the pool's connections and the listener
        time.sleep(0.1)
    return generation


def _unfinished(private: Private) -> str:
    with private.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, task, status, attempt, worker FROM jobs"
                " WHERE status NOT IN ('finished', 'failed', 'canceled') LIMIT 10"
            )
        ).all()
    return f"jobs left unfinished: {rows}"


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
