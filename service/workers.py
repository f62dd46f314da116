"""`jobsvc worker`: one RQ worker with the ledger hooks, or N of them under one command.

With `--processes N` the command forks N workers of one class and supervises them:

- SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed) is passed on to every worker
  as SIGTERM: each finishes the job it runs and exits (RQ's warm stop). A second signal,
  a second or more later, stops running jobs at once (RQ's cold stop; such a job runs
  again once its lease runs out).
- A worker that dies (SIGKILL, the OOM killer, an error) is started again at once under
  the same name, and the command logs why. One of the first N that exits with an error
  status within `START_S` seconds cannot start (a setting or a task module is wrong): the
  command stops the others and exits 1, naming it. A replacement that ends within
  `START_S` (Redis away for a moment, say) is started again after a pause, doubling from
  `BACKOFF_S` up to `BACKOFF_MAX_S`. One that ends by itself with status 0
  (`--burst` with empty queues, or RQ's shutdown command) is not replaced; the command
  exits when none is left.
- Each worker has its own process group, so a terminal's Ctrl-C reaches only the command
  (which passes it on, once), and each dies with the command if the command is SIGKILLed.
"""

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from service import broker, lease, tracing
from service.settings import Settings

log = logging.getLogger("jobsvc")

START_S = 10.0  # a worker that ends sooner than this after its start never started
BACKOFF_S = 1.0  # the first pause before a replacement that never started is tried again
BACKOFF_MAX_S = 30.0
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run(
    settings: Settings,
    queues: list[str],
    *,
    simple: bool,
    burst: bool,
    name: str | None,
    restarted: bool = False,
) -> None:
    """One worker in this process, until it stops."""
    from rq.utils import now, utcformat

    from service.worker import LedgerWorker, SimpleLedgerWorker

    tracing.setup("jobsvc-worker")
    cls = SimpleLedgerWorker if simple else LedgerWorker
    # Redis away for less than a lease check (JOBS_LEASE_S / 3) stalls a job's
    # bookkeeping, never its lease; the worker goes on when Redis is back.
    connection = broker.connect(settings, ride_out_s=settings.lease_s / 3)
    w = cls(
        queues,
        connection=connection,
        serializer=broker.SERIALIZER,
        name=name or f"{socket.gethostname()}.{os.getpid()}",
    )
    if restarted and connection.exists(w.key):  # the one it replaces died without a word
        connection.hset(w.key, "death", utcformat(now()))
    log.info("worker %s ready (%s) on queues: %s", w.name, cls.__name__, ", ".join(queues))
    w.work(burst=burst, logging_level=settings.log_level.upper())


@dataclass
class _Child:
    index: int
    name: str | None
    pid: int = 0
    started: float = 0.0
    restarted: bool = False
    pause_s: float = 0.0  # before its next start, while its replacements fail at once
    due: float = 0.0  # when it starts again, if it waits

    @property
    def label(self) -> str:
        return self.name or f"worker {self.index}"


def supervise(
    settings: Settings,
    queues: list[str],
    *,
    count: int,
    simple: bool,
    burst: bool,
    name: str | None,
) -> int:
    """`count` workers forked from this process, kept running until a signal stops them
    all; the command's exit status."""
    from service import registry

    registry.load(settings.task_modules)  # imported once here, shared by every fork
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)

    for sig in _STOPS:
        signal.signal(sig, on_signal)

    running: dict[int, _Child] = {}
    waiting: list[_Child] = []  # replacements that failed at once, each until its `due`

    def start(child: _Child) -> None:
        again = child.restarted
        child.pid = _fork(
            lambda: run(
                settings, queues, simple=simple, burst=burst, name=child.name, restarted=again
            )
        )
        child.started = time.monotonic()
        running[child.pid] = child

    for i in range(1, count + 1):
        start(_Child(i, f"{name}-{i}" if name else None))
    log.info("%d worker processes started (%s)", count, "simple" if simple else "forking")
    stopping_since: float | None = None
    forwarded = 0
    status = 0
    while running or waiting:
        if len(signals) > forwarded:
            waiting.clear()
            if stopping_since is None:
                stopping_since = time.monotonic()
                log.info("stopping %s: each finishes its running job", _count(running))
                _signal_all(running, signal.SIGTERM)
            elif time.monotonic() - stopping_since >= 1:  # RQ ignores a repeat within 1 s
                log.warning("stopping %s now, and their running jobs", _count(running))
                _signal_all(running, signal.SIGTERM)
            forwarded = len(signals)
        for child in [c for c in waiting if c.due <= time.monotonic()]:
            waiting.remove(child)
            start(child)
        pid, wait_status = _reap()
        if pid == 0:
            time.sleep(0.1)
            continue
        if pid not in running:
            continue
        child = running.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping_since is not None or code == 0:
            continue
        how = f"signal {-code}" if code < 0 else f"status {code}"
        at_once = time.monotonic() - child.started < START_S
        if at_once and code > 0 and not child.restarted:
            log.error(
                "%s (pid %d) exited with %s during start-up; stopping the others",
                child.label,
                pid,
                how,
            )
            stopping_since, status = time.monotonic(), 1
            _signal_all(running, signal.SIGTERM)
            continue
        # A replacement that fails at once (Redis away for a moment, say) is tried again
        # after a pause that doubles: it must not stop the others, nor spin.
        pause_s = min(BACKOFF_MAX_S, child.pause_s * 2 or BACKOFF_S) if child.restarted else 0
        child.pause_s = pause_s if at_once else 0.0
        child.restarted = True
        if child.pause_s:
            log.warning(
                "%s (pid %d) ended with %s %.1f s after its start; starting it again in %.0f s",
                child.label,
                pid,
                how,
                time.monotonic() - child.started,
                child.pause_s,
            )
            child.due = time.monotonic() + child.pause_s
            waiting.append(child)
            continue
        log.warning("%s (pid %d) ended with %s; starting it again", child.label, pid, how)
        start(child)
    log.info("workers stopped")
    return status


def _fork(target: Callable[[], None]) -> int:
    parent = os.getpid()
    # The stop signals wait until the child has its own handlers (the default ones): one
    # that came in between would run the supervisor's handler in the child, and be lost.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid
    code = 1
    try:
        os.setpgrp()  # the terminal's Ctrl-C goes to the supervisor only, which passes it on
        lease.end_with_parent(parent)
        for sig in _STOPS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        target()
        code = 0
    except SystemExit as exc:  # RQ's cold stop raises SystemExit()
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap() -> tuple[int, int]:
    try:
        return os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0, 0


def _signal_all(running: dict[int, _Child], sig: int) -> None:
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _count(running: dict[int, _Child]) -> str:
    return f"{len(running)} worker{'' if len(running) == 1 else 's'}"
