"""A worker process's way to the ledger: its connections, made in the process that uses
them (never inherited across a fork), and the retrying write every bookkeeping statement
goes through (architecture.md, "Outcomes survive database outages").

Bookkeeping (claims, outcomes, progress) runs on a psycopg connection the process holds, in
autocommit: each statement is its own transaction and one round trip, prepared after a few
runs, with no pool checkout around it. Lease renewals have a connection of their own, so a
renewal that hangs holds no outcome up. A task's own SQL gets a pooled SQLAlchemy engine
(`engine`)."""

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, make_url

from service import db, tracing
from service.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

LANES = ("main", "lease")  # claims and outcomes; lease renewals


class LedgerWriter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        # lane → its connection, and a lock: a lane is used by one thread at a time
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        self._locks = {lane: threading.Lock() for lane in LANES}
        self._pid = 0

    def _mine(self) -> None:
        """Forget connections made by another process (the parent of a work horse; psycopg
        never ends a session from a process that did not open it)."""
        if self._pid != os.getpid():
            self._engine, self._conns, self._pid = None, {}, os.getpid()

    @property
    def engine(self) -> Engine:
        """The engine tasks use (transactions, pre-pinged connections)."""
        self._mine()
        if self._engine is None:
            self._engine = db.create_worker_engine(self.settings, "worker")
        return self._engine

    def dispose(self, close: bool = True) -> None:
        """Drop this process's connections (`close=False` in a fresh fork: the parent's
        connections stay the parent's)."""
        if self._engine is not None:
            self._engine.dispose(close=close)
        if close and self.owned_here():
            for conn in self._conns.values():
                conn.close()
        self._engine, self._conns = None, {}

    def owned_here(self) -> bool:
        return self._pid == os.getpid()

    def _connection(self, lane: str) -> psycopg.Connection[Any]:
        conn = self._conns.get(lane)
        if conn is None or conn.closed or conn.broken:
            url = make_url(self.settings.sync_database_url).set(drivername="postgresql")
            conn = self._conns[lane] = psycopg.connect(
                url.render_as_string(hide_password=False),
                autocommit=True,
                **db.psycopg_args(self.settings, "worker"),
            )
        return conn

    def once(self, fn: Callable[..., T], *args: Any, lane: str = "main") -> T:
        """Run one ledger statement once, in autocommit, on `lane`'s connection."""
        self._mine()
        with self._locks[lane]:
            return fn(self._connection(lane), *args)

    def write(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Run one ledger statement (autocommit: it is its own transaction), retrying
        transient errors with backoff for up to JOBS_WORKER_DB_RETRY_S.

        None when the database stays unreachable: the job's row is left as it was, and the
        reconciler delivers it again (queued) or its lease expires (started).
        """
        deadline = time.monotonic() + self.settings.worker_db_retry_s
        delay = 0.1
        while True:
            try:
                with tracing.statement(fn.__name__):
                    return self.once(fn, *args)
            except db.SYNC_ERRORS as exc:
                if not db.transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("ledger unreachable, giving up on this write: %s", db.cause(exc))
                    return None
                log.warning("ledger write failed (%s); retrying in %.1fs", db.cause(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
