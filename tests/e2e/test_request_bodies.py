"""Request bodies cannot pin the API's memory: the key is checked before a body is read,
a body has a deadline, uploads go to disk as they arrive and stop at the client's quota.
Against a real uvicorn server, over raw sockets where the client misbehaves."""

import hashlib
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from service import storage
from tests.e2e.conftest import Stack
from tests.support import make_key

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def raw_request(port: int, head: str, body: bytes = b"", wait_s: float = 5) -> bytes:
    """Send `head` (and `body`), then read what the server answers within `wait_s`."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return answer


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("key", [None, "not-a-key"], ids=["no key", "unknown key"])
def test_a_body_without_a_live_key_is_refused_before_it_is_read(
    stack: Stack, key: str | None
) -> None:
    auth = f"Authorization: Bearer {key}\n" if key else ""
    head = (
        f"POST /jobs HTTP/1.1\nHost: 127.0.0.1\n{auth}Content-Type: application/json\n"
        f"Content-Length: {50 * MB}\n"
    )
    started = time.monotonic()

    answer = raw_request(stack.port, head)  # not one byte of the 50 MB is sent

    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert b"www-authenticate: bearer" in answer.lower()
    assert time.monotonic() - started < 4


def test_a_trickled_body_is_408_and_pins_nothing(
    make_stack: Callable[..., Stack], api_key: str
) -> None:
    stack = make_stack(JOBS_BODY_TIMEOUT_S="1")
    head = (
        f"POST /jobs HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {api_key}\n"
        "Content-Type: application/json\nContent-Length: 100\n"
    )
    started = time.monotonic()

    answer = raw_request(stack.port, head, b'{"task": "ec', wait_s=6)  # and then nothing

    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < time.monotonic() - started < 4
    assert stack.http.get("/healthz").status_code == 200


@pytest.fixture
def uploads_dir(api_key: str) -> Path:
    """The uploads of "tester" (the `api_key` client), emptied: earlier tests' uploads
    would count against its quota."""
    folder = storage.uploads_dir(Path(os.environ["JOBS_ARTIFACTS_DIR"]), "tester")
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def test_an_upload_goes_to_disk_not_to_memory(
    make_stack: Callable[..., Stack], uploads_dir: Path
) -> None:
    stack = make_stack(JOBS_MAX_UPLOAD_BYTES=str(200 * MB))
    api = stack.procs["api"].pid
    assert stack.http.post("/jobs/uploads", content=b"warm").status_code == 201
    before = peak_rss_mb(api)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(80):  # 80 MB
            piece = bytes([i]) * MB
            digest.update(piece)
            yield piece

    r = stack.http.post("/jobs/uploads", content=body(), timeout=60)

    assert r.status_code == 201, r.text
    assert r.json()["size"] == 80 * MB and r.json()["sha256"] == digest.hexdigest()
    assert (uploads_dir / r.json()["upload_id"]).stat().st_size == 80 * MB
    grew = peak_rss_mb(api) - before
    assert grew < 30, f"the API's peak RSS grew {grew:.0f} MB for an 80 MB upload"


def test_uploads_stop_at_the_clients_quota(
    make_stack: Callable[..., Stack], uploads_dir: Path, sql_engine: Engine
) -> None:
    stack = make_stack(JOBS_UPLOAD_QUOTA_BYTES=str(3 * MB), JOBS_MAX_UPLOAD_BYTES=str(2 * MB))
    piece = b"u" * (3 * MB // 2)

    first = stack.http.post("/jobs/uploads", content=piece)
    second = stack.http.post("/jobs/uploads", content=piece)
    third = stack.http.post("/jobs/uploads", content=piece)
    too_big = stack.http.post("/jobs/uploads", content=b"b" * (2 * MB + 1))

    assert [first.status_code, second.status_code] == [201, 201]
    assert third.status_code == 413
    assert "quota of 3145728 bytes" in third.json()["detail"]
    assert too_big.status_code == 413
    assert sorted(p.name for p in uploads_dir.iterdir()) == sorted(
        [first.json()["upload_id"], second.json()["upload_id"]]
    )  # nothing half-written is left
    other = make_key(sql_engine, "other")
    r = stack.http.post(
        "/jobs/uploads", content=piece, headers={"Authorization": f"Bearer {other}"}
    )
    assert r.status_code == 201  # the quota is per client
