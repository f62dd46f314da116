"""The docs' examples against a live stack in dev mode: every code block of README.md and
docs/*.md runs (and answers what the doc shows) or is skipped by a named rule, and every
task's OpenAPI example (what /docs offers for `POST /jobs`) is accepted and runs to its end.

How to write an example that this runs: the docstring of `tests/e2e/doc_examples.py`.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from redis import Redis
from sqlalchemy import Engine, text

from service.mailsink import MailSink
from tests.e2e import doc_examples as ex
from tests.e2e.conftest import BIN, FAST, FINAL, Stack
from tests.support import LEDGER_TABLES, QuietHandler, loopback_server, make_key

pytestmark = pytest.mark.e2e

RETRY_S = 20.0  # a read-only command's output may take this long to match
STATUS_S = 30.0  # a job named by `# → status "…"` reaches it within this
# What one file's examples leave behind (API keys stay: the stack's own requests use one).
FILE_TABLES = "jobs, job_events, analytics_events, schedules, queue_states, rate_limits"


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """One stack and one ledger for the whole module (the examples of one file build on
    each other); the module's fixture empties them once, before it starts."""


class Hook(QuietHandler):
    """A webhook receiver that answers every POST with 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()


@dataclass
class Live:
    stack: Stack
    hook_url: str
    mail: Path
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port}"


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, sql_engine: Engine, redis_conn: Redis
) -> Iterator[Live]:
    """The API, two workers and a reconciler as `jobsvc run` starts them in dev mode: no
    keys, a mail sink for `send_email`, a callback secret, webhooks to this machine."""
    with sql_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {LEDGER_TABLES}"))
    redis_conn.flushdb()
    key = make_key(sql_engine, "docs-reader")
    root = tmp_path_factory.mktemp("docs")
    sink = MailSink(root / "mail")
    sink.start()
    workdir = root / "work"
    workdir.mkdir()
    (workdir / "photo.jpg").write_bytes(photo())
    (workdir / "workflow.json").write_text(
        json.dumps(
            {
                "jobs": [
                    {"ref": "a", "task": "echo", "args": {"value": 1}},
                    {"task": "echo", "depends_on": ["a"], "args": {"value": 2}},
                ]
            }
        )
    )
    (workdir / ".curlrc").write_text('write-out = "\\n@status %{http_code}\\n"\n')
    env = {
        "JOBS_DEV_MODE": "1",
        "JOBS_SMTP_HOST": "127.0.0.1",
        "JOBS_SMTP_PORT": str(sink.port),
        "JOBS_CALLBACK_SECRET": "docs-examples-secret",
        "JOBS_WEBHOOK_ALLOW_PRIVATE": "true",
        "JOBS_CALLBACK_BACKOFF_S": "0.2",
        **FAST,
    }
    stack = Stack(root, key, env)
    try:
        with loopback_server(Hook) as hook_url:
            # Started together: each takes a second or more to come up.
            stack.start("worker-1", "jobsvc", "worker")
            stack.start("worker-2", "jobsvc", "worker", "--simple")
            stack.start("reconciler", "jobsvc", "reconcile")
            stack.api()
            for name in ("worker-1", "worker-2", "reconciler"):
                stack.wait_for_log(name, "ready")
            yield Live(stack, hook_url, root / "mail", workdir)
    finally:
        stack.close()
        sink.stop()


# --- Which blocks run -------------------------------------------------------------------


def plan(block: ex.Block) -> str | None:
    """Why a block is not run (None: it runs); an error for a block no rule covers."""
    if block.language in ex.SKIP_LANGUAGES:
        return ex.SKIP_LANGUAGES[block.language]
    if block.language == "python":
        return ex.python_rule(block)
    if block.language == "json":
        return None if ex.is_batch(block) else "an answer the doc shows (checked: it is JSON)"
    assert block.language == "sh", (
        f"{block.where}: a ```{block.language or '(no language)'} block: no rule runs or "
        f"skips it (tests/e2e/doc_examples.py)"
    )
    rules = [ex.skip_rule(command) for command in ex.commands(block)]
    if all(rules):
        return "; ".join(sorted({r for r in rules if r}))
    return None


def runnable() -> list[Path]:
    found = []
    for path in ex.documents():
        with contextlib.suppress(AssertionError):
            if any(plan(block) is None for block in ex.blocks(path)):
                found.append(path)
    return found


def test_every_block_runs_or_is_skipped_by_a_rule() -> None:
    skipped: dict[str, list[str]] = {}
    run = 0
    for path in ex.documents():
        assert not re.search(r"^~~~", path.read_text(), re.M), f"{path}: fence with ```"
        for block in ex.blocks(path):
            why = plan(block)
            if why is None:
                run += 1
            else:
                skipped.setdefault(why, []).append(block.where)
            if block.language == "json":
                ex.shown_json(block.text, {})
    print(f"{run} blocks run; skipped: {json.dumps(skipped, indent=2)}")
    assert run, "no example runs"


# --- Running them -----------------------------------------------------------------------


@pytest.mark.parametrize("path", runnable(), ids=lambda p: p.name)
def test_examples_answer_what_the_docs_show(live: Live, path: Path, sql_engine: Engine) -> None:
    """A file's examples, in order, from an empty ledger: a reader may start with any file."""
    with sql_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {FILE_TABLES}"))
    bindings = ex.Bindings()
    for block in ex.blocks(path):
        if plan(block) is not None:
            continue
        if block.language == "sh":
            for command in ex.commands(block):
                if ex.skip_rule(command) is None:
                    run_command(live, block, command, bindings)
        elif block.language == "json":
            r = live.stack.http.post("/jobs/batch", content=block.text)
            assert r.status_code < 300, f"{block.where}: {r.status_code} {r.text}"
        else:
            run_python(live, block)


def run_command(live: Live, block: ex.Block, command: ex.Command, bindings: ex.Bindings) -> None:
    where = f"{block.where}: $ {command.words}"
    line = bindings.fill(command.text).replace("localhost:8000", f"127.0.0.1:{live.stack.port}")
    env = {
        **live.stack.env,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "JOBS_URL": live.url,
        "KEY": "",  # dev mode: no key, as a reader running `make run` has none
        "ID": bindings.last_job or "",
        "CURL_HOME": str(live.workdir),
    }
    sends_json = re.match(r"curl .*\s(-d|--data|--data-raw)\s", command.words)
    if sends_json and "content-type: application/json" not in command.words.lower():
        raise AssertionError(f"{where}\nsend JSON with -H 'content-type: application/json'")
    exit_code = int(m.group(1)) if (m := ex.EXPECT_EXIT.search(command.text)) else 0
    deadline = time.monotonic() + RETRY_S
    while True:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=live.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        stdout, status = done.stdout, None
        if command.words.startswith("curl"):
            stdout, _, code = stdout.rstrip("\n").rpartition("@status ")
            stdout, status = stdout.rstrip("\n"), int(code)
        printed = (
            stdout
            if command.shown and command.shown[0].startswith(("{", "["))
            else (done.stderr + stdout)
        )
        problem = None
        if done.returncode != exit_code:
            problem = f"exit {done.returncode}, not {exit_code}: {done.stderr}{stdout}"
        elif status is not None and not 200 <= status < 300:
            problem = f"HTTP {status}: {stdout}"
        else:
            problem = ex.matches(command.shown, printed, bindings)
        if problem is None:
            break
        if not ex.READ_ONLY.match(command.words) or time.monotonic() > deadline:
            raise AssertionError(f"{where}\n{problem}")
        time.sleep(0.3)
    if ex.SUBMIT.match(command.words):
        bindings.last_job = submitted(stdout)
        if named := ex.NAMES_ID.search(command.text):
            bindings.values[named.group(1)] = bindings.last_job
    if expected := ex.EXPECT_STATUS.search(command.text):
        assert bindings.last_job
        job = live.stack.wait(bindings.last_job, (expected.group(1),), timeout=STATUS_S)
        assert job["status"] == expected.group(1), f"{where}\n{job}"


def submitted(stdout: str) -> str:
    """The id of the job a submit printed (a batch: its last job)."""
    body = json.loads(stdout)
    if "jobs" in body:
        body = body["jobs"][-1]
    job_id: str = body["id"]
    return job_id


def run_python(live: Live, block: ex.Block) -> None:
    code = block.text.replace('"http://127.0.0.1:8000"', repr(live.url))
    namespace: dict[str, Any] = {"KEY": None}  # dev mode: no key
    if "upload_ids" in code:
        namespace["upload_ids"] = [upload(live) for _ in range(3)]
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, block.where, "exec"), namespace)


def upload(live: Live) -> str:
    r = live.stack.http.post(
        "/jobs/uploads", content=photo(), headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 201, r.text
    upload_id: str = r.json()["upload_id"]
    return upload_id


# --- What /docs offers ------------------------------------------------------------------


def test_every_task_example_is_accepted_and_runs(live: Live) -> None:
    """Each task's default example in /docs, sent as it is, answers 202, and runs to its
    end: `finished` (`fail`: `failed`, as it is meant to). Where the example names what
    only a user has (an upload, a webhook receiver), the copy that runs has the test's."""
    document = live.stack.http.get("/openapi.json").json()
    body = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    examples = {name: e["value"] for name, e in body["examples"].items()}
    tasks = {t["name"] for t in live.stack.http.get("/tasks").json()}
    assert set(examples) == tasks
    own = {"make_thumbnails": lambda: {"upload_id": upload(live)}}
    own["call_webhook"] = lambda: {"url": live.hook_url}
    jobs = {}
    for name, example in examples.items():
        r = live.stack.http.post("/jobs", json=example)
        assert r.status_code == 202, f"{name}: {example}: {r.text}"
        jobs[name] = r.json()["id"]
        if name in own:
            live.stack.http.post(f"/jobs/{jobs[name]}/cancel")  # no such upload, or host
            mine = {**example, "args": {**example["args"], **own[name]()}}
            r = live.stack.http.post("/jobs", json=mine)
            assert r.status_code == 202, f"{name}: {mine}: {r.text}"
            jobs[name] = r.json()["id"]
    for name, job_id in jobs.items():
        job = live.stack.wait(job_id, FINAL)
        expected = "failed" if name == "fail" else "finished"
        assert job["status"] == expected, f"{name}: {job}"
    assert any(live.mail.glob("*.eml")), "send_email's example sent no message"
