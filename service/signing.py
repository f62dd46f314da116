"""Signatures of completion callbacks.

Each callback carries `X-Jobs-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the
HMAC-SHA256, keyed with JOBS_CALLBACK_SECRET, of `<t>.` followed by the raw request body.
Receivers check it with `verify` (the README shows the same function, standard library only).
"""

import hashlib
import hmac
import time

HEADER = "X-Jobs-Signature"


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The signature header's value for `body`, made now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """True if `header` signs exactly `body` with `secret`, made within `tolerance_s`."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))
