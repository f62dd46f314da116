"""`make bench` at a tiny size, so the suite cannot rot: every scenario runs and reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from service.settings import Settings
from tests.support import RUN_ID, drop_database

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "submit", "submit p99", "submit p99 at 240/s", "poll", "batch submit", "worker forking",
    "worker simple", "claim, no key", "claim, concurrency key", "claim, rate limiter",
    "end-to-end p50 (forking)", "end-to-end p50 (simple)", "listing p99, deep cursor, 4 clients",
    "API peak RSS", "worker peak RSS", "jobsvc --help", "jobsvc tasks",
}  # fmt: skip


def test_tiny_bench_writes_every_scenario(tmp_path: Path, settings: Settings) -> None:
    """In a database and Redis db of this test run's own: never `make bench`'s."""
    out = tmp_path / "results.json"
    database = f"jobsvc_bench_{RUN_ID}"
    redis_db = make_url(str(settings.redis_url)).database or "0"  # this run's, flushed per test

    try:
        done = subprocess.run(
            [
                *(sys.executable, "bench/run.py", "--size", "tiny", "--out", str(out)),
                *("--database", database, "--redis-db", redis_db),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        drop_database(settings, database)

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["cpus"] >= 1 and "wrk" in report["machine"]["load_generator"]
    names = {s["name"] for s in report["scenarios"]}
    assert names >= SCENARIOS, SCENARIOS - names
    for s in report["scenarios"]:
        assert {
            "name",
            "metric",
            "value",
            "baseline_name",
            "baseline",
            "ratio",
            "target",
            "met",
        } <= set(s)
        assert s["value"] > 0, s
    assert "targets met" in done.stdout
