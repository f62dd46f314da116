"""`call_webhook`: POST JSON to a third party's URL, with an SSRF guard.

The guard resolves the host and refuses private, loopback, link-local and other
non-public addresses (unless JOBS_WEBHOOK_ALLOW_PRIVATE), then connects to the address it
checked, so a second DNS answer cannot point the request elsewhere.
"""

import ipaddress
import json
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, JsonValue

from jobs import context
from jobs.registry import PermanentError, TaskArgs, task

if TYPE_CHECKING:
    import httpx


class WebhookRefused(PermanentError):
    """The target is not one this service may call, or it answered 4xx."""


class WebhookArgs(TaskArgs):
    url: AnyHttpUrl = Field(description="an http or https URL on the public internet")
    payload: JsonValue = Field(default=None, description="sent as the JSON body")
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)


class RetryableStatus(Exception):
    """A 5xx answer: the receiver may recover, so the job is retried."""


@task(
    name="call_webhook",
    queue="webhooks",
    timeout_s=60,
    max_attempts=5,
    backoff_s=10,
    preload=("httpx",),
)
def call_webhook(args: WebhookArgs) -> dict[str, Any]:
    """POST `payload` as JSON to `url`; retried on network errors and 5xx, not on 4xx."""
    settings = context.current().settings
    url = str(args.url)
    address = public_address(url, settings.webhook_allow_private)
    headers = {**args.headers, "Content-Type": "application/json"}
    response = post(
        url, address, json.dumps(args.payload).encode(), headers, settings.webhook_timeout_s
    )
    body = response.content[: settings.webhook_response_bytes].decode("utf-8", "replace")
    if response.status_code >= 500:
        raise RetryableStatus(f"{url} answered {response.status_code}: {body[:200]}")
    if response.status_code >= 400:
        raise WebhookRefused(f"{url} answered {response.status_code}: {body[:200]}")
    return {"status_code": response.status_code, "body": body}


def public_address(url: str, allow_private: bool) -> str:
    """The address to connect to for `url`, after the SSRF checks; WebhookRefused if none."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"{url!r} is not an http(s) URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {parts.hostname}: {exc}") from None  # retried
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if not address.is_global or address.is_multicast:
                raise WebhookRefused(
                    f"{parts.hostname} resolves to {address}, which is not a public address "
                    "(JOBS_WEBHOOK_ALLOW_PRIVATE allows it)"
                )
    return str(addresses[0])


def post(
    url: str, address: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> "httpx.Response":
    """POST to the checked address, with the URL's host name for Host and TLS."""
    import httpx

    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = parts._replace(netloc=netloc).geturl()
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        return client.post(
            target,
            content=body,
            headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": "jobsvc"},
            extensions={"sni_hostname": host},
        )
