"""`/tasks`, `/healthz`, `/readyz` and the OpenAPI document."""

import httpx


async def test_tasks_publish_their_args_schema(client: httpx.AsyncClient) -> None:
    r = await client.get("/tasks")

    assert r.status_code == 200
    tasks = {t["name"]: t for t in r.json()}
    assert {"echo", "fail", "sleep", "send_email", "generate_report", "make_thumbnails"} <= set(
        tasks
    )
    assert {"call_webhook", "record_analytics", "cleanup"} <= set(tasks)
    sleep = tasks["sleep"]
    assert sleep["queue"] == "default"
    assert sleep["max_attempts"] == 1
    assert sleep["args_schema"]["required"] == ["seconds"]
    assert sleep["args_schema"]["properties"]["seconds"]["type"] == "number"
    assert sleep["args_schema"]["additionalProperties"] is False
    assert tasks["echo"]["description"] == "Return `value` unchanged."


async def test_openapi_shows_each_tasks_args(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    components = schema["components"]["schemas"]
    assert {"EchoArgs", "FailArgs", "SleepArgs"} <= set(components)
    assert components["SleepArgs"]["properties"]["seconds"]["maximum"] == 3600
    sleep_job = components["SleepJob"]["properties"]
    assert sleep_job["task"]["enum"] == ["sleep"]
    assert sleep_job["args"]["$ref"] == "#/components/schemas/SleepArgs"
    assert sleep_job["timeout_s"]["anyOf"][0]["maximum"] == 3600  # JOBS_MAX_TIMEOUT_S
    body = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["discriminator"]["mapping"]["sleep"] == "#/components/schemas/SleepJob"
    assert len(body["schema"]["oneOf"]) == len((await client.get("/tasks")).json())
    assert body["examples"]["sleep"]["value"] == {"task": "sleep", "args": {"seconds": 2}}
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
