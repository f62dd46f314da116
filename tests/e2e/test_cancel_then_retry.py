"""Cancel, then retry at once: the retried attempt waits until the canceled one has
stopped, so two attempts of a job never run at the same time."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import TEST_TASKS, Stack
from tests.support import beat_spans

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("simple", [True, False], ids=["simple", "forking"])
def test_a_retry_right_after_a_cancel_never_overlaps_the_canceled_attempt(
    make_stack: Callable[..., Stack], tmp_path: Path, simple: bool
) -> None:
    stack = make_stack(**TEST_TASKS)
    stack.named_workers(w1=simple, w2=simple)
    record = tmp_path / "beats"
    r = stack.http.post("/jobs", json={"task": "beat", "args": {"seconds": 3, "path": str(record)}})
    job_id = r.json()["id"]
    assert stack.wait(job_id, ("started",))["status"] == "started"
    stack.wait(job_id, ("never",), timeout=1)  # let it run for 1 s (2 s left)

    assert stack.http.post(f"/jobs/{job_id}/cancel").json()["status"] == "canceled"
    retried = stack.http.post(f"/jobs/{job_id}/retry", timeout=30)

    assert retried.status_code == 202, retried.text
    done = stack.wait(job_id, timeout=30)
    assert done["status"] == "finished" and done["attempt"] == 2
    attempts = beat_spans(record)
    assert set(attempts) == {1, 2}
    assert attempts[1][1] < attempts[2][0]  # the canceled attempt had stopped
