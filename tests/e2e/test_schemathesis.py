"""Schemathesis against the live OpenAPI schema of a real `jobsvc api` process, with a
worker running what it submits: with a valid key no 5xx and no response that breaks the
schema; without one, only 401s (and the open health routes). A bounded number of examples
per operation."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

OPEN = {"/healthz", "/readyz", "/metrics"}
EXAMPLES = 25


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Stack]:
    stack = Stack(Path(tmp_path_factory.mktemp("schemathesis")), key="")
    try:
        stack.api()
        stack.worker("w")  # generated jobs run, so reads and cancels meet running ones too
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def api_schema(live: Stack) -> Any:
    return schemathesis.openapi.from_url(str(live.http.base_url).rstrip("/") + "/openapi.json")


def for_every_operation(api_schema: Any, check: Callable[[Any], None]) -> list[str]:
    """Run `check` on generated cases of each operation; returns the operations covered."""
    covered = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            check(case)

        run()
        covered.append(f"{operation.method.upper()} {operation.path}")
    return covered


# Schema-valid bodies the API still refuses, with a 4xx that says why, for rules a JSON
# Schema cannot carry: no NUL in any text, size and depth limits on args and meta, run_at
# within JOBS_MAX_DELAY_S of now. Everything else is checked: no 5xx, documented status
# codes, and every response body as the schema describes it.
EXCLUDED = [positive_data_acceptance]


def test_with_a_key(api_schema: Any, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    covered = for_every_operation(
        api_schema,
        lambda case: case.call_and_validate(headers=headers, excluded_checks=EXCLUDED),
    )
    assert "POST /jobs" in covered and "POST /jobs/{job_id}/retry" in covered


def test_without_a_key(api_schema: Any) -> None:
    def only_401(case: Any) -> None:
        response = case.call()
        if case.path in OPEN:
            assert response.status_code in (200, 503)
        else:
            assert response.status_code == 401, (case.method, case.path, response.text)

    assert len(for_every_operation(api_schema, only_401)) >= 8
