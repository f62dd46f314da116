"""Live changes from PostgreSQL: one LISTEN connection per API process, fanned out.

Migration 0005's trigger sends `NOTIFY jobs, '<job id>'` in the transaction of each change of
a job's status or progress; requests waiting on that job (long-polls, streams) wake. Waiters
register before they read the job, so no change between the read and the wait is missed,
and they hold no pooled connection while they wait. Migration 0006's trigger sends
`NOTIFY api_keys` when a key is revoked or deleted; `on_keys_changed` callbacks run (the
key cache empties). While the listening connection is down (PostgreSQL restarting),
`listening` is false; it reconnects with backoff, then wakes every waiter, which reads its
job again, and runs the key callbacks.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from uuid import UUID

import asyncpg
from sqlalchemy import make_url

from service.rows import JobRow
from service.settings import Settings
from service.tables import TERMINAL

log = logging.getLogger(__name__)

CHANNEL = "jobs"
KEYS_CHANNEL = "api_keys"


class Watcher:
    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.listen_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._timeout = settings.db_connect_timeout_s
        # How often the quiet listening connection proves it still answers: notifications
        # lost on a dead link must not go unnoticed for longer than a cached key is trusted.
        self._check_s = max(0.5, min(settings.key_cache_s, 5.0))
        self._waiters: dict[UUID, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.on_keys_changed: list[Callable[[], None]] = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="jobs-listener")

    async def stop(self) -> None:
        if self._task is None:
            return
        # Python 3.11's wait_for can swallow a cancel that lands as the awaited call
        # completes: ask again until the listener has ended.
        while not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.5)
        with suppress(asyncio.CancelledError):
            await self._task

    @contextmanager
    def watching(self, job_id: UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the job changes (and after a reconnect); clear it after
        each read."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            job_id = UUID(payload)
        except ValueError:
            return
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _keys_changed(self, *_args: object) -> None:
        for callback in self.on_keys_changed:
            callback()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()
        self._keys_changed()

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen_once()
                log.warning("job notifications: the listening connection was lost")
                delay = 0.2
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("job notifications unavailable (%s); retrying in %.1fs", exc, delay)
            self._wake_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _listen_once(self) -> None:
        """Listen on one connection until PostgreSQL closes it."""
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            server_settings={"application_name": "jobsvc-api-listen"},
        )
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._notified)
            await conn.add_listener(KEYS_CHANNEL, self._keys_changed)
            self.listening.set()
            self._wake_all()  # changes while no one listened: read again
            while not lost.is_set():
                try:
                    async with asyncio.timeout(self._check_s):
                        await lost.wait()
                except TimeoutError:  # quiet: make sure the link still carries anything
                    async with asyncio.timeout(self._timeout):
                        await conn.fetchval("SELECT 1")
        finally:
            self.listening.clear()
            if not conn.is_closed():
                with suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()


async def wait_final(
    watcher: Watcher,
    job_id: UUID,
    read: Callable[[], Awaitable[JobRow]],
    wait_s: float,
    every_s: float,
) -> JobRow:
    """The job once it is final, or as it is after `wait_s` seconds (a long-poll). `read`
    takes a pooled connection only while it reads: none is held while waiting. It reads
    again at least every `every_s` (so `read` can check the caller's key as it goes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    with watcher.watching(job_id) as changed:  # before the first read: no change is missed
        job = await read()
        while job.status not in TERMINAL:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, every_s))
            changed.clear()
            job = await read()
    return job
