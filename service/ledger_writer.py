"""A worker process's way to the ledger: its connections, made in the process that uses
them (never inherited across a fork), and the retrying write every bookkeeping statement
goes through (architecture.md, "Outcomes survive database outages").

Bookkeeping (claims, outcomes, leases, progress) runs on one psycopg connection the process
holds, in autocommit: each statement is its own transaction and one round trip, prepared
after a few runs, with no pool checkout around it. A task's own SQL gets a pooled
SQLAlchemy engine (`engine`)."""

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import DBAPIError

from service import db
from service.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class LedgerWriter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # the lease's thread writes too
        self._pid = 0

    def _mine(self) -> None:
        """Forget connections made by another process (the parent of a work horse; psycopg
        never ends a session from a process that did not open it)."""
        if self._pid != os.getpid():
            self._engine, self._conn, self._pid = None, None, os.getpid()

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
        if close and self._conn is not None and self.owned_here():
            self._conn.close()
        self._engine, self._conn = None, None

    def owned_here(self) -> bool:
        return self._pid == os.getpid()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            url = make_url(self.settings.sync_database_url).set(drivername="postgresql")
            self._conn = psycopg.connect(
                url.render_as_string(hide_password=False),
                autocommit=True,
                connect_timeout=max(1, int(self.settings.db_connect_timeout_s)),
                application_name="jobsvc-worker",
            )
        return self._conn

    def once(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one ledger statement once, in autocommit."""
        self._mine()
        with self._lock:
            return fn(self._connection(), *args)

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
                return self.once(fn, *args)
            except (DBAPIError, psycopg.Error) as exc:
                if not db.transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("ledger unreachable, giving up on this write: %s", db.cause(exc))
                    return None
                log.warning("ledger write failed (%s); retrying in %.1fs", db.cause(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
