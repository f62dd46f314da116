"""`jobsvc worker`: one RQ worker with the ledger hooks, or N of them under one command.

With `--processes N` the command forks N workers of one class and supervises them:

- SIGTERM or SIGINT (Ctrl-C) is passed on to every worker: each finishes the job it runs
  and exits (RQ's warm stop). A second signal, a second or more later, stops running jobs
  at once (RQ's cold stop; such a job runs again once its lease runs out).
- A worker that dies (SIGKILL, the OOM killer, an error) is started again at once under
  the same name, and the command logs why. One that exits with an error status within its
  first `START_S` seconds cannot start (a setting or a task module is wrong): the command
  stops the others and exits 1, naming it. One that ends by itself with status 0
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
    children = [_Child(i, f"{name}-{i}" if name else None) for i in range(1, count + 1)]
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def start(child: _Child, restarted: bool = False) -> None:
        child.pid = _fork(
            lambda: run(
                settings, queues, simple=simple, burst=burst, name=child.name, restarted=restarted
            )
        )
        child.started = time.monotonic()

    for child in children:
        start(child)
    log.info("%d worker processes started (%s)", count, "simple" if simple else "forking")
    running = {child.pid: child for child in children}
    stopping_since: float | None = None
    forwarded = 0
    status = 0
    while running:
        if len(signals) > forwarded:
            if stopping_since is None:
                stopping_since = time.monotonic()
                log.info("stopping %s: each finishes its running job", _count(running))
                _signal_all(running, signal.SIGTERM)
            elif time.monotonic() - stopping_since >= 1:  # RQ ignores a repeat within 1 s
                log.warning("stopping %s now, and their running jobs", _count(running))
                _signal_all(running, signal.SIGTERM)
            forwarded = len(signals)
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
        if code > 0 and time.monotonic() - child.started < START_S:
            log.error(
                "%s (pid %d) exited with %s during start-up; stopping the others",
                child.label,
                pid,
                how,
            )
            stopping_since, status = time.monotonic(), 1
            _signal_all(running, signal.SIGTERM)
            continue
        log.warning("%s (pid %d) ended with %s; starting it again", child.label, pid, how)
        start(child, restarted=True)
        running[child.pid] = child
    log.info("workers stopped")
    return status


def _fork(target: Callable[[], None]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgrp()  # the terminal's Ctrl-C goes to the supervisor only, which passes it on
        lease.end_with_parent(parent)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
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
