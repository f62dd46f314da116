"""Requests to other people's servers (webhooks, completion callbacks), behind an SSRF
guard.

The guard resolves the host and refuses private, loopback, link-local and other
non-public addresses (unless JOBS_WEBHOOK_ALLOW_PRIVATE), then connects to the address it
checked, so a second DNS answer cannot point the request elsewhere.
"""

import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from service.errors import PermanentError

if TYPE_CHECKING:
    import httpx


class WebhookRefused(PermanentError):
    """The target is not one this service may call, or it answered 4xx."""


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
