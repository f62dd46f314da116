"""What flow control costs a claim: a worker's admission of a popped job (`service.admission`)
on one connection, for a job with nothing in its way, one with a concurrency key, and one
whose task names a limiter (at a rate it never reaches: the check, never a wait)."""

import statistics
import time
from typing import Any

from sqlalchemy import text

CLAIM_KINDS = {
    # kind: (task, args, concurrency key)
    "no key": ("echo", {"value": 1}, None),
    "concurrency key": ("echo", {"value": 1}, "bench"),
    "rate limiter": ("send_email", {"to": ["a@example.com"], "subject": "s", "text": "t"}, None),
}


def claims_per_s(bench: Any, kind: str, n: int) -> float:
    """Admit n queued jobs of `kind`, one after another, as one worker does."""
    from service import admission, broker, registry
    from service.ledger_writer import LedgerWriter
    from service.settings import Settings

    registry.load(["jobs.builtin", "jobs.email"])
    task, args, key = CLAIM_KINDS[kind]
    queue = registry.get(task).queue
    with bench.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rate_limits (name, per_s) VALUES ('smtp', 1e9)"
                " ON CONFLICT (name) DO NOTHING"
            )
        )
        rows = conn.execute(
            text(
                "INSERT INTO jobs (id, task, queue, args, status, timeout_s, owner,"
                " concurrency_key, max_concurrency)"
                " SELECT gen_random_uuid(), :task, :queue, CAST(:args AS jsonb), 'queued', 30,"
                " 'bench', CAST(:key AS text), CASE WHEN :key IS NOT NULL THEN 1000000 END"
                " FROM generate_series(1, :n)"
                " RETURNING id, task, queue, args, timeout_s, created_at, concurrency_key, priority"
            ),
            {"task": task, "queue": queue, "args": _json(args), "key": key, "n": n},
        ).all()
    broker.enqueue_rows(bench.redis, rows, 500)
    jobs = [broker.queue(queue, bench.redis).fetch_job(str(row.id)) for row in rows]
    settings = Settings(**{"database_url": bench.env["DATABASE_URL"]})
    writer = LedgerWriter(settings)
    try:
        started = time.perf_counter()
        for job in jobs:
            assert admission.admit(writer, job, "bench", settings) is not None
        elapsed = time.perf_counter() - started
    finally:
        writer.dispose()
        bench.redis.flushdb()
        with bench.engine.begin() as conn:
            conn.execute(text("DELETE FROM jobs"))
    return n / elapsed


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def claims(bench: Any, scenario: Any) -> None:
    """Claims a second on one connection, each kind the median of `rounds` runs, reported
    against the claim of a job with nothing in its way (no target: a cost to know)."""
    n = bench.size["claims"]
    rounds = max(3, bench.size["rounds"] * 2 + 1)
    rates: dict[str, list[float]] = {kind: [] for kind in CLAIM_KINDS}
    for _ in range(rounds):  # interleaved: drift on a shared machine hits each kind alike
        for kind in CLAIM_KINDS:
            rates[kind].append(claims_per_s(bench, kind, n))
    plain = statistics.median(rates["no key"])
    for kind, found in rates.items():
        value = statistics.median(found)
        bench.add(
            scenario(
                f"claim, {kind}",
                "claims/s",
                round(value, 1),
                "claim, no key",
                round(plain, 1),
                round(value / plain, 3),
            )
        )
