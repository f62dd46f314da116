"""Hostile input gets a 4xx with a readable body, never a 500, and records nothing: text
PostgreSQL cannot store (a lone surrogate, sent as a JSON `\\ud800` escape) anywhere in a
submit."""

import httpx
import pytest

from tests.support import Ledger

SURROGATE = "\\ud800"  # as it appears in the JSON text: a valid escape, unencodable text


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (f'{{"task": "echo", "args": {{"value": "a{SURROGATE}b"}}}}', "args", "unpaired surrogate"),
        (f'{{"task": "echo", "args": {{"k{SURROGATE}": 1}}}}', "args", "unpaired surrogate"),
        (f'{{"task": "echo", "meta": {{"m": ["{SURROGATE}"]}}}}', "meta", "unpaired surrogate"),
        (f'{{"task": "echo{SURROGATE}"}}', "task", "valid string"),
        (f'{{"task": "echo", "queue": "default{SURROGATE}"}}', "queue", "valid string"),
    ],
    ids=["arg value", "arg key", "meta", "task", "queue"],
)
async def test_a_lone_surrogate_is_a_422(
    client: httpx.AsyncClient, ledger_rows: Ledger, body: str, field: str, says: str
) -> None:
    r = await client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"][:2] == ["body", field]
    assert says in problem["msg"]
    assert ledger_rows.count() == 0


async def test_a_lone_surrogate_in_a_batch_is_a_422(
    client: httpx.AsyncClient, ledger_rows: Ledger
) -> None:
    body = (
        f'{{"jobs": [{{"task": "echo"}}, {{"task": "echo", "args": {{"value": "{SURROGATE}"}}}}]}}'
    )
    r = await client.post("/jobs/batch", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert ledger_rows.count() == 0
