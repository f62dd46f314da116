"""A JSON body without its Content-Type (curl's `-d` sends form-urlencoded) is read as JSON
on every JSON route; any other type, or a browser's form-urlencoded, is 415 naming the
header to send."""

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from service.settings import Settings
from tests.support import Ledger, api_client, make_key

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("headers", [FORM, {}], ids=["curl -d", "no content-type"])
async def test_json_routes_read_a_body_without_its_content_type_as_json(
    client: httpx.AsyncClient,
    settings: Settings,
    sql_engine: Engine,
    ledger_rows: Ledger,
    headers: dict[str, str],
) -> None:
    job = await client.post(
        "/jobs",
        content=_body({"task": "echo", "args": {"value": 1}, "delay_s": 60}),
        headers=headers,
    )
    batch = await client.post(
        "/jobs/batch", content=_body({"jobs": [{"task": "echo", "delay_s": 60}]}), headers=headers
    )
    schedule = await client.post(
        "/schedules",
        content=_body({"name": "n", "cron": "0 3 * * *", "task": "echo"}),
        headers=headers,
    )
    paused = await client.patch(
        f"/schedules/{schedule.json()['id']}", content=_body({"paused": True}), headers=headers
    )
    canceled = await client.post("/jobs/cancel", content=_body({"task": "echo"}), headers=headers)
    async with api_client(settings, make_key(sql_engine, "ops", admin=True)) as admin:
        limit = await admin.put(
            "/rate-limits/smtp", content=_body({"rate": "5/s"}), headers=headers
        )

    assert job.status_code == 202, job.text
    assert job.json()["args"] == {"value": 1}
    assert batch.status_code == 202, batch.text
    assert schedule.status_code == 201, schedule.text
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert canceled.status_code == 200 and canceled.json()["affected"] == 2
    assert limit.status_code == 200 and limit.json()["per_s"] == 5
    assert ledger_rows.count("status = 'canceled'") == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "multipart/form-data; boundary=x"},
        {**FORM, "origin": "https://elsewhere.example"},  # a page's cross-site form post
    ],
    ids=["text/plain", "multipart", "form from a browser"],
)
async def test_a_body_of_another_type_is_415_naming_the_header(
    client: httpx.AsyncClient, ledger_rows: Ledger, headers: dict[str, str]
) -> None:
    r = await client.post("/jobs", content=_body({"task": "echo"}), headers=headers)

    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["detail"]
    assert ledger_rows.count() == 0


async def test_not_json_without_a_content_type_is_the_usual_422(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/jobs", content=b"task=echo", headers=FORM)

    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"
