"""`jobsvc` commands as a user runs them: set-up, clear failures, and the stock `rq worker`."""

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url

from service.localservers import free_port
from service.settings import Settings
from tests.e2e.conftest import BIN, Stack
from tests.support import RUN_ID, Ledger, drop_database, make_key

pytestmark = pytest.mark.e2e


def jobsvc(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "jobsvc"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_create_creates_a_missing_database_once(settings: Settings) -> None:
    name = f"jobsvc_test_created_{RUN_ID}"
    url = make_url(str(settings.database_url)).set(database=name).render_as_string(False)
    drop_database(settings, name)
    try:
        first = jobsvc("db", "create", DATABASE_URL=url)
        second = jobsvc("db", "create", DATABASE_URL=url)
    finally:
        drop_database(settings, name)
    assert first.returncode == 0
    assert f"created database {url}" in first.stdout
    assert second.returncode == 0
    assert "exists" in second.stdout


@pytest.mark.parametrize("command", [["api"], ["worker", "--burst"], ["db", "create"]])
def test_unreachable_postgres_is_a_clear_error(command: list[str]) -> None:
    url = f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{free_port()}/jobsvc"

    done = jobsvc(*command, DATABASE_URL=url)

    assert done.returncode == 2
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in done.stderr
    assert "PostgreSQL" in done.stderr or "database" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


@pytest.mark.parametrize("command", [["api"], ["worker", "--burst"], ["dashboard"]])
def test_unreachable_redis_is_a_clear_error(command: list[str]) -> None:
    port = free_port()

    done = jobsvc(
        *command,
        REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0",
        JOBS_DASHBOARD_USERNAME="ops",
        JOBS_DASHBOARD_PASSWORD="pw",
    )

    assert done.returncode == 2
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_stock_rq_worker_with_the_ledger_class(stack: Stack, tmp_path: Path) -> None:
    from service.settings import Settings

    stack.start(
        "rq",
        "rq",
        "worker",
        "-w",
        "service.worker.LedgerWorker",
        "-S",
        "rq.serializers.JSONSerializer",
        "--url",
        str(Settings().redis_url),
        "default",
    )
    job = stack.wait(stack.submit("echo", value="via rq worker"))

    assert job["status"] == "finished"
    assert job["result"] == "via rq worker"
    events = stack.http.get(f"/jobs/{job['id']}/events").json()
    assert [e["status"] for e in events] == ["queued", "started", "finished"]


# ---------------------------------------------------------------- the client commands


ENGINE = ("sqlalchemy", "redis", "rq", "asyncpg", "psycopg", "service.settings")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list", "--help"],
        ["schedules", "show", "--help"],
        ["list", "--url", "http://127.0.0.1:9"],
    ],
    ids=["help", "list help", "schedules show help", "list, no API"],
)
def test_help_and_client_commands_load_no_engine(args: list[str]) -> None:
    code = (
        "import sys\nfrom service.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', sorted(m for m in {ENGINE!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.stdout.rstrip().endswith("loaded: []"), done.stdout + done.stderr


def test_keys_list_says_when_there_is_none() -> None:
    done = jobsvc("keys", "list")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no API keys")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Stack]:
    """One API and one worker for the client commands' tests (each test has its own key)."""
    stack = Stack(tmp_path_factory.mktemp("cli"), key="")
    try:
        stack.api()
        stack.worker("w", simple=True)
        yield stack
    finally:
        stack.close()


@pytest.fixture
def cli(live: Stack, api_key: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`jobsvc <args>` against the live stack as client "tester"."""

    def run(*args: str, key: str = api_key) -> subprocess.CompletedProcess[str]:
        return jobsvc(*args, JOBS_URL=str(live.http.base_url), JOBS_API_KEY=key)

    return run


def _submitted(cli: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> str:
    done = cli("submit", *args)
    assert done.returncode == 0, done.stderr
    job_id: str = json.loads(done.stdout)["id"]
    return job_id


def test_list_events_retry_and_tasks(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    echoes = [_submitted(cli, "echo", json.dumps({"value": i}), "--wait") for i in range(3)]
    failed = cli("submit", "fail", '{"message": "boom"}', "--wait")
    assert failed.returncode == 1
    failed_id = json.loads(failed.stdout)["id"]

    listed = cli("list")
    page = cli("list", "--limit", "2")
    rest = cli("list", "--limit", "2", "--cursor", page.stderr.split("--cursor ")[1].split()[0])
    oldest = cli("list", "--oldest", "--limit", "1")
    only_failed = cli("list", "--status", "failed", "--json")
    none = cli("list", "--task", "sleep")
    history = cli("events", failed_id)
    again = cli("retry", failed_id, "--wait")
    known = cli("tasks")
    echo = cli("tasks", "echo")

    ids = [line.split()[0] for line in listed.stdout.splitlines()]
    assert ids == [failed_id, *reversed(echoes)]
    assert f"{failed_id}  failed     fail  default  attempt 1/1" in listed.stdout
    assert [line.split()[0] for line in page.stdout.splitlines() + rest.stdout.splitlines()] == ids
    assert "more: " in page.stderr and "more: " not in rest.stderr
    assert [line.split()[0] for line in oldest.stdout.splitlines()] == ids[::-1]
    assert [j["id"] for j in json.loads(only_failed.stdout)["items"]] == [failed_id]
    assert none.returncode == 0 and none.stdout.strip() == "no jobs match the filters"
    assert [line.split()[1] for line in history.stdout.splitlines()] == [
        "queued", "started", "failed",
    ]  # fmt: skip
    assert "by worker" in history.stdout and "error TaskFailed: boom" in history.stdout
    assert again.returncode == 1 and json.loads(again.stdout)["attempt"] == 2
    assert (
        "echo  (queue default" in known.stdout and "args: value: JsonValue = null" in known.stdout
    )
    assert "seconds: number" in known.stdout
    assert json.loads(echo.stdout)["args_schema"]["properties"]["value"]
    unknown = cli("tasks", "emial")
    assert unknown.returncode == 2 and "known tasks: " in unknown.stderr


def test_refusals_are_readable_lines(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    extra = cli("submit", "echo", '{"bogus": 1}')
    not_a_date = cli("list", "--created-after", "yesterday")
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps({"jobs": [{"task": "echo"}, {"task": "sleep", "args": {}}]}))
    batch = cli("batch", str(workflow))
    missing = cli("status", "00000000-0000-0000-0000-000000000000")

    assert extra.returncode == 2
    assert extra.stderr.splitlines() == [
        "jobsvc: the API answered 422: the request is not valid:",
        "  args.bogus: Extra inputs are not permitted",
    ]
    assert not_a_date.returncode == 2
    assert "  created_after: Input should be a valid datetime" in not_a_date.stderr
    assert batch.returncode == 2 and "  jobs[1].args.seconds: Field required" in batch.stderr
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert "the API answered 404" in missing.stderr
    assert all('"loc"' not in done.stderr for done in (extra, not_a_date, batch))


def test_schedules_by_name_and_empty_lists(
    cli: Callable[..., subprocess.CompletedProcess[str]], sql_engine: Engine
) -> None:
    admin = make_key(sql_engine, "ops", admin=True)
    empty = cli("schedules", "list")
    no_limits = cli("rate-limits", "list", key=admin)
    made = cli("schedules", "create", "nightly", "0 3 * * *", "echo")
    assert made.returncode == 0, made.stderr

    shown = cli("schedules", "show", "nightly")
    paused = cli("schedules", "pause", "nightly")
    by_id = cli("schedules", "resume", json.loads(made.stdout)["id"])
    unknown = cli("schedules", "show", "weekly")
    deleted = cli("schedules", "delete", "nightly")

    assert empty.returncode == 0 and empty.stdout.startswith("no schedules")
    assert no_limits.returncode == 0 and no_limits.stdout.startswith("no rate limits")
    assert json.loads(shown.stdout)["id"] == json.loads(made.stdout)["id"]
    assert json.loads(paused.stdout)["paused"] is True
    assert json.loads(by_id.stdout)["paused"] is False
    assert unknown.returncode == 2
    assert "no schedule named 'weekly' (your schedules: nightly)" in unknown.stderr
    assert deleted.returncode == 0 and cli("schedules", "list").stdout.startswith("no schedules")


def test_bulk_asks_for_all_and_batch_waits(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, ledger_rows: Ledger
) -> None:
    _submitted(cli, "echo", "{}", "--delay", "600")

    refused = cli("bulk", "cancel")
    counted = cli("bulk", "cancel", "--all", "--dry-run")
    assert refused.returncode == 2 and "--all" in refused.stderr
    assert ledger_rows.count("status = 'canceled'") == 0
    assert json.loads(counted.stdout)["matched"] == 1

    workflow = tmp_path / "workflow.json"
    workflow.write_text(
        json.dumps(
            {
                "jobs": [
                    {"ref": "a", "task": "echo", "args": {"value": 1}},
                    {"task": "echo", "args": {"value": 2}, "depends_on": ["a"]},
                ],
                "on_complete": {"task": "fail", "args": {"message": "after all"}},
            }
        )
    )
    waited = cli("batch", str(workflow), "--wait")

    assert waited.returncode == 1, waited.stderr  # on_complete failed
    out = json.loads(waited.stdout)
    assert [job["result"] for job in out["jobs"]] == [1, 2]
    assert out["on_complete"]["status"] == "failed"
    assert "3 jobs final: 1 failed, 2 finished" in waited.stderr
