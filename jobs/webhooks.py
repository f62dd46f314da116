"""`call_webhook`: POST JSON to a third party's URL, behind the service's SSRF guard."""

import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, ConfigDict, Field, JsonValue

from service.task_api import (
    RateLimited,
    TaskArgs,
    WebhookRefused,
    current,
    post,
    public_address,
    task,
)

# A receiver that answers 429 without Retry-After: its limiter backs off this long.
DEFAULT_RETRY_AFTER_S = 30


class WebhookArgs(TaskArgs):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": "https://hooks.example.com/orders", "payload": {"order": 17}}]
        }
    )

    url: AnyHttpUrl = Field(description="an http or https URL on the public internet")
    payload: JsonValue = Field(default=None, description="sent as the JSON body")
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)


class RetryableStatus(Exception):
    """A 5xx answer: the receiver may recover, so the job is retried."""


def per_host(args: dict[str, Any]) -> str | None:
    """Each receiving host has a limiter of its own (`webhook:<host>`): one that answers
    429 slows down every job bound for it, and an admin may give it a rate."""
    host = urlsplit(str(args.get("url", ""))).hostname
    return f"webhook:{host}" if host else None


@task(
    name="call_webhook",
    queue="webhooks",
    timeout_s=60,
    max_attempts=5,
    backoff_s=10,
    preload=("httpx",),
    rate_limit=per_host,
)
def call_webhook(args: WebhookArgs) -> dict[str, Any]:
    """POST `payload` as JSON to `url`; retried on network errors and 5xx, not on 4xx; a
    429 slows down every job for the host (for its Retry-After) and is tried again then,
    no attempt spent."""
    settings = current().settings
    url = str(args.url)
    address = public_address(
        url, settings.webhook_allow_private, allow_loopback=settings.webhook_allow_loopback
    )
    headers = {**args.headers, "Content-Type": "application/json"}
    response = post(
        url,
        address,
        json.dumps(args.payload).encode(),
        headers,
        settings.webhook_timeout_s,
        keep=settings.webhook_response_bytes,
    )
    body = response.body.decode("utf-8", "replace")
    if response.status_code == 429:
        raise RateLimited(response.retry_after_s or DEFAULT_RETRY_AFTER_S)
    if response.status_code >= 500:
        raise RetryableStatus(f"{url} answered {response.status_code}: {body[:200]}")
    if response.status_code >= 400:
        raise WebhookRefused(f"{url} answered {response.status_code}: {body[:200]}")
    return {"status_code": response.status_code, "body": body}
