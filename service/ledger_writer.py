"""A worker process's way to the ledger: its engines, made in the process that uses them
(never inherited across a fork), and the retrying write every bookkeeping statement goes
through (architecture.md, "Outcomes survive database outages")."""

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from service import db
from service.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class LedgerWriter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[bool, Engine] = {}  # autocommit → engine, of this process
        self._pid = 0

    def _engine(self, autocommit: bool) -> Engine:
        if self._pid != os.getpid():
            self._engines, self._pid = {}, os.getpid()
        if autocommit not in self._engines:
            self._engines[autocommit] = db.create_worker_engine(
                self.settings, "worker", autocommit=autocommit
            )
        return self._engines[autocommit]

    @property
    def engine(self) -> Engine:
        """The engine tasks use (transactions, pre-pinged connections)."""
        return self._engine(autocommit=False)

    def dispose(self, close: bool = True) -> None:
        """Drop this process's pools (`close=False` in a fresh fork: the parent's
        connections stay the parent's)."""
        for engine in self._engines.values():
            engine.dispose(close=close)
        self._engines = {}

    def owned_here(self) -> bool:
        return self._pid == os.getpid()

    def once(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one ledger statement once, in autocommit."""
        with self._engine(autocommit=True).connect() as conn:
            return fn(conn, *args)

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
            except DBAPIError as exc:
                if not db.transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    log.error("ledger unreachable, giving up on this write: %s", exc.orig)
                    return None
                log.warning("ledger write failed (%s); retrying in %.1fs", exc.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
