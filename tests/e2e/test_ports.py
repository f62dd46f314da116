"""A port another process holds: each server names itself and the port, and exits 2."""

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from service.localservers import free_port
from tests.e2e.conftest import BIN

pytestmark = pytest.mark.e2e


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("what", "command"),
    [
        ("api", ["api", "--port", "{taken}"]),
        ("dashboard", ["dashboard", "--port", "{taken}"]),
        ("api", ["run", "--port", "{taken}", "--dashboard-port", "{free}"]),
        ("dashboard", ["run", "--port", "{free}", "--dashboard-port", "{taken}"]),
    ],
)
def test_a_taken_port_is_named(what: str, command: list[str], taken: int) -> None:
    args = [part.format(taken=taken, free=free_port()) for part in command]
    done = subprocess.run(
        [str(BIN / "jobsvc"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBS_DEV_MODE": "1"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"jobsvc: {what}: port {taken} is in use" in done.stderr
