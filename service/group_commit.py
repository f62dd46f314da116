"""Group commit for single submits: the `POST /jobs` requests that arrive while earlier ones
are being written are recorded by one insert and handed to RQ by one Redis pipeline.

No timer: a submit that finds a writer free is written at once, alone, so a quiet API adds
no latency. Under load, the submits that arrive during a group's round trips form the next
group (up to `max_group`; `writers` groups in flight). Each request is answered when its
own row is committed and its job handed to Redis, exactly as a lone submit would be, so
"record before enqueue" and a 202's meaning do not change. Idempotency keys keep theirs:
a repeated key gets its first job (200) and a key reused for another request is a 409 for
that request alone — the rest of its group is written.
"""

import asyncio
import logging

from redis import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from service import metrics, submit
from service.enqueued import EnqueuedMarks
from service.rows import JobRow, NewJob
from service.settings import Settings

log = logging.getLogger(__name__)

Answer = tuple[JobRow, bool]  # the row, and whether it is new (False: an idempotency repeat)


class GroupCommit:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis,
        marks: EnqueuedMarks,
        settings: Settings,
        max_group: int = 256,
        writers: int = 2,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.marks = marks
        self.settings = settings
        self.max_group = max_group
        self.writers = writers
        self._waiting: list[tuple[NewJob, asyncio.Future[Answer]]] = []
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, new: NewJob) -> Answer:
        """Record `new` and hand it to RQ with whatever submits arrive meanwhile."""
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((new, answer))
        if self._busy < self.writers:
            self._busy += 1
            task = asyncio.create_task(self._write_while_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await answer

    async def _write_while_waiting(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self.max_group]
                del self._waiting[: self.max_group]
                await self._write(group)
        finally:
            self._busy -= 1

    async def _write(self, group: list[tuple[NewJob, asyncio.Future[Answer]]]) -> None:
        metrics.SUBMIT_GROUP_SIZE.observe(len(group))
        try:
            async with self.engine.connect() as conn:
                recorded = await submit.record_group(conn, [new for new, _ in group])
            new_rows = [r[0] for r in recorded if not isinstance(r, Exception) and r[1]]
            sent = {
                row.id: row
                for row in await submit.hand_over(self.redis, self.marks, self.settings, new_rows)
            }
        except Exception as exc:  # the ledger away, say: every request of the group hears it
            for _, answer in group:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for (_, answer), outcome in zip(group, recorded, strict=True):
            if answer.done():  # the request went away
                continue
            if isinstance(outcome, Exception):
                answer.set_exception(outcome)
            else:
                row, created = outcome
                answer.set_result((sent.get(row.id, row), created))
