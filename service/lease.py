"""A running attempt's lease, kept alive by its worker (architecture.md, "Leases").

The claim gives the attempt a short lease (JOBS_LEASE_S). While the job runs, the worker
renews it every third of that, each renewal in a thread of its own, so a renewal that
hangs (PostgreSQL gone quiet behind a dead link) holds nothing up. `LeaseKeeper.holds`
says whether the lease is sure to last until the next check: when it is not (renewals
failing, or the row says this attempt no longer runs), the worker stops the job at once,
before the lease runs out, so the reconciler's rescue never overlaps it.
"""

import ctypes
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# How much sooner than the lease's end a job is stopped, beyond one check interval: room for
# the stop itself, and for the database's clock reading the lease a little early.
SAFETY_S = 1.0


class LeaseKeeper:
    def __init__(self, renew: Callable[[], bool], lease_s: float, interval_s: float) -> None:
        """`renew` extends the lease in the ledger: True if it did, False if the row says
        this attempt no longer holds the job; it may raise or hang."""
        self._renew = renew
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._held_until = time.monotonic() + lease_s  # the claim just set the lease
        self._renewing: threading.Thread | None = None
        self.lost = False  # the ledger gave the job to someone else (or ended it)

    def holds(self) -> bool:
        """Start a renewal unless one is under way; False if the job must stop now."""
        if self._renewing is None or not self._renewing.is_alive():
            self._renewing = threading.Thread(
                target=self._renew_once, args=(time.monotonic(),), name="lease", daemon=True
            )
            self._renewing.start()
        return not self.lost and (time.monotonic() + self._interval_s + SAFETY_S < self._held_until)

    def _renew_once(self, asked_at: float) -> None:
        try:
            renewed = self._renew()
        except Exception as exc:  # any failure leaves the lease to run out
            log.warning("lease not renewed: %s", exc)
            return
        if renewed:
            # Counted from before the request: the ledger's lease ends no sooner.
            self._held_until = max(self._held_until, asked_at + self._lease_s)
        else:
            self.lost = True


_PR_SET_PDEATHSIG = 1
# `jobsvc run` names itself to the commands it starts in this variable: each ends with it.
PARENT_ENV = "JOBS_END_WITH_PID"


def end_with_parent(parent: int) -> None:
    """Called in a work horse: it has its own process group, so it outlives a SIGKILLed
    main process; nobody would renew its lease then, and the job would run on beside its
    rescue. So it ends when its parent does: SIGKILL from the kernel (Linux's
    PR_SET_PDEATHSIG; no thread in the horse), or elsewhere a thread that watches. (Also
    called at the start of each command `jobsvc run` starts: see `end_with_named_parent`.)"""
    try:
        if _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
            if os.getppid() != parent:  # the parent died before the request took
                os._exit(1)
            return
    except (OSError, AttributeError):  # no prctl here
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def end_with_named_parent() -> None:
    """At a command's start: end with the process PARENT_ENV names, if it names one (taken
    out of the environment, so what this process starts is not tied to that one)."""
    parent = os.environ.pop(PARENT_ENV, "")
    if parent.isdigit():
        end_with_parent(int(parent))


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)
