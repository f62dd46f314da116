"""`enqueued_at` for the jobs an API process put on RQ, written a batch at a time, off the
request path.

A submit answers as soon as the job is committed and enqueued, with `enqueued_at` set; the
ledger records that time a few milliseconds later, for every job enqueued meanwhile, in one
statement (unless a worker's claim, which sets it when it is missing, came first). If
that write is lost (PostgreSQL away, the process killed), nothing else is: the row stays
`queued` with no `enqueued_at`, and the reconciler checks Redis for it after
JOBS_REDELIVER_AFTER_S (it is there, so it is only marked as seen).
"""

import asyncio
import logging
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from service import ledger

log = logging.getLogger(__name__)


class EnqueuedMarks:
    def __init__(self, engine: AsyncEngine, delay_s: float = 0.005, batch: int = 1000) -> None:
        self._engine = engine
        self._delay_s = delay_s
        self._batch = batch
        self._pending: list[tuple[UUID, datetime]] = []
        self._flushing: asyncio.Task[None] | None = None

    def add(self, job_id: UUID, at: datetime) -> None:
        self._pending.append((job_id, at))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_soon(), name="enqueued-marks")

    async def close(self) -> None:
        """Write what is pending (at shutdown)."""
        if self._flushing is not None:
            await self._flushing
        await self._flush()

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._delay_s)  # let a few more requests join this batch
        await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            marks, self._pending = self._pending[: self._batch], self._pending[self._batch :]
            try:
                async with self._engine.connect() as conn:
                    await ledger.mark_enqueued(conn, [m[0] for m in marks], [m[1] for m in marks])
            except Exception as exc:  # the reconciler covers these rows; see the module doc
                log.warning("enqueued_at not recorded for %d jobs: %s", len(marks), exc)
