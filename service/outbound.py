"""Requests to other people's servers (webhooks, completion callbacks), behind an SSRF
guard.

The guard resolves the host and refuses private, loopback, link-local and other
non-public addresses (unless JOBS_WEBHOOK_ALLOW_PRIVATE; JOBS_WEBHOOK_ALLOW_LOOPBACK lets
loopback alone through), then connects to the address it checked, so a second DNS answer
cannot point the request elsewhere.
"""

import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from service.errors import PermanentError


class WebhookRefused(PermanentError):
    """The target is not one this service may call, or it answered 4xx."""


def public_address(url: str, allow_private: bool, *, allow_loopback: bool = False) -> str:
    """The address to connect to for `url`, after the SSRF checks; WebhookRefused if none.
    `allow_loopback` lets this machine's loopback addresses through, and no other."""
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
            if not (_public(address) or (allow_loopback and _loopback(address))):
                raise WebhookRefused(
                    f"{parts.hostname} resolves to {address}, which is not a public address "
                    "(JOBS_WEBHOOK_ALLOW_PRIVATE allows it)"
                )
    return str(addresses[0])


# IPv6 ranges that carry an IPv4 address for a gateway or the host to reach (NAT64, 6to4,
# Teredo, IPv4-compatible): where they lead is not the address that was checked.
_CARRIERS = [
    ipaddress.ip_network(net)
    for net in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96")
]


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _public(address.ipv4_mapped)
        if any(address in carrier for carrier in _CARRIERS):
            return False
    return address.is_global and not address.is_multicast


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes  # at most the `keep` bytes asked for; the rest was never read
    retry_after_s: float | None = None  # what its Retry-After header asks, if any


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds, or an HTTP date); None if
    there is none, or it is neither."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def post(
    url: str,
    address: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    keep: int = 0,
) -> Answer:
    """POST to the checked address, with the URL's host name for Host and TLS; no
    redirects followed. Reads at most `keep` bytes of the answer's body, however much the
    server sends (raises httpx.HTTPError or OSError on network trouble)."""
    import httpx

    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = parts._replace(netloc=netloc).geturl()
    with (
        httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
        client.stream(
            "POST",
            target,
            content=body,
            headers={
                **headers,
                "Host": parts.netloc.rsplit("@", 1)[-1],
                "User-Agent": "jobsvc",
                "Accept-Encoding": "identity",  # what is kept is what was sent
            },
            extensions={"sni_hostname": host},
        ) as response,
    ):
        kept = bytearray()
        if keep > 0:
            for chunk in response.iter_raw():
                kept += chunk[: keep - len(kept)]
                if len(kept) >= keep:
                    break
        wait_s = retry_after_s(response.headers.get("retry-after"))
        return Answer(response.status_code, bytes(kept), wait_s)
