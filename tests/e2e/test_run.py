"""`jobsvc run` against this machine's servers: a process that cannot start is named, and
the rest are stopped."""

import os
import subprocess
from pathlib import Path

import pytest

from service.localservers import free_port
from tests.e2e.conftest import BIN

pytestmark = pytest.mark.e2e


def test_a_process_that_exits_is_named_and_the_rest_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_DASHBOARD_")} | {
        "JOBS_DEV_MODE": "0",  # the dashboard refuses to run without its credentials
        "JOBS_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    command = ["run", "--port", str(free_port()), "--dashboard-port", str(free_port())]
    done = subprocess.run(
        [str(BIN / "jobsvc"), *command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "dashboard exited with status 2" in done.stderr
    assert "the dashboard needs JOBS_DASHBOARD_USERNAME" in done.stderr
    assert "stopped in" in done.stderr
