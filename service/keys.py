"""API keys: who a request acts for.

A key is `jobsvc_` and 43 random URL-safe characters, shown once when it is created. Only
its SHA-256 is stored (a key has 256 random bits, so a fast hash is as strong as a slow
one here), with its first characters to tell keys apart in listings.
"""

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service import errors, sql

PREFIX = "jobsvc_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
MAX_KEY_LENGTH = 200
SYSTEM_CLIENT = "system"  # the reconciler's own client (periodic cleanup); no key has it


@dataclass(frozen=True)
class Client:
    """The caller: owns the jobs it submits; an admin sees everyone's."""

    name: str
    admin: bool = False

    @property
    def owner_filter(self) -> str | None:
        """The owner to restrict ledger reads to; None for an admin."""
        return None if self.admin else self.name


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(conn: AsyncConnection, key: str) -> Client | None:
    """The client a live key belongs to; None for an unknown or revoked key.

    The API asks `KeyCache` first, so this runs once per key and process until a key
    changes.
    """
    if not key.startswith(PREFIX) or len(key) > MAX_KEY_LENGTH:
        return None
    row = await sql.fetch_one(conn, sql.query("authenticate"), key_hash=_hash(key))
    return Client(row["name"], row["admin"]) if row else None


class KeyCache:
    """Keys an API process has seen live, by hash, so a request needs no key lookup.

    Emptied whenever any key is revoked or deleted: migration 0006's trigger sends NOTIFY
    `api_keys` in that transaction and the process's listener (`service.watch`) calls
    `clear`. While the listener is down, nothing is served from here, so a revoked key
    still fails on its next request; and whatever happens to notifications, an entry is
    trusted for `ttl_s` (JOBS_KEY_CACHE_S) at most. A lookup that a change overtook is not
    cached (`generation`). Only live keys are kept: a new key works at once.
    """

    def __init__(
        self, trusted: Callable[[], bool], ttl_s: float = 5.0, max_entries: int = 10_000
    ) -> None:
        self._trusted = trusted
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clients: dict[str, tuple[Client, float]] = {}  # hash → (client, cached at)
        self.generation = 0  # moves on every change: lookups begun before it are stale

    def get(self, key: str) -> Client | None:
        if not self._trusted():
            return None
        found = self._clients.get(_hash(key))
        if found is None or time.monotonic() - found[1] > self._ttl_s:
            return None
        return found[0]

    def put(self, key: str, client: Client, generation: int) -> None:
        """Cache what a lookup begun at `generation` found, unless a change came since."""
        if generation != self.generation:
            return
        if len(self._clients) >= self._max_entries:
            self._clients.clear()
        self._clients[_hash(key)] = (client, time.monotonic())

    def clear(self) -> None:
        self._clients.clear()
        self.generation += 1


def create(conn: Connection, name: str, admin: bool) -> str:
    """Create a key named `name`; returns the key, which is stored nowhere."""
    if not NAME.match(name) or name == SYSTEM_CLIENT:
        raise errors.KeyNameInvalid(name)
    key = PREFIX + secrets.token_urlsafe(32)
    try:
        sql.run(
            conn,
            sql.query("create_key"),
            name=name,
            key_hash=_hash(key),
            prefix=key[: len(PREFIX) + 6],
            admin=admin,
        )
    except IntegrityError as exc:
        raise errors.KeyNameTaken(name) from exc
    return key


@dataclass(frozen=True)
class KeyInfo:
    name: str
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


def list_keys(conn: Connection) -> list[KeyInfo]:
    return [KeyInfo(**row) for row in sql.rows(conn, sql.query("list_keys"))]


def revoke(conn: Connection, name: str) -> None:
    """Revoke a key at once: its next request gets 401."""
    if sql.one(conn, sql.query("revoke_key"), name=name) is None:
        raise errors.KeyUnknown(name)
