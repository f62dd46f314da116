"""`jobsvc run`: the whole stack in the foreground, one supervising process.

It checks its ports are free, starts project-local servers where needed, creates and
migrates the database, then starts the API, the worker processes, the reconciler and the
dashboard, and logs one "ready" line once the API and the dashboard accept connections.
In JOBS_DEV_MODE it also starts a mail sink for `send_email` and signs callbacks with a
development secret, so every built-in task runs without configuration.

One process ending stops the others (the command exits 1, naming it). Ctrl-C, SIGTERM or
SIGHUP (the terminal closed) stops everything within `STOP_S` seconds: each process is
asked to stop; a worker still running a job after `GRACE_S` stops it (as a lost worker's
job, it runs again after its lease if it has attempts left); whatever is left is killed.
Each process dies with this one (Linux), so a SIGKILLed `jobsvc run` leaves none behind
holding its ports.
"""

import contextlib
import http.client
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from service import lease, localservers
from service.mailsink import MailSink
from service.settings import Settings

log = logging.getLogger("jobsvc")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_S = 120.0  # the API and the dashboard accept connections within this
GRACE_S = 3.0  # a worker may finish its running job within this when stopped
STOP_S = 6.0  # then whatever is left is killed
API_GRACE_S = "2"  # the API's wait for open long-polls and streams when stopped
SECRET_MIN_CHARS = 32  # a shorter dev callback secret file (an interrupted write) is made anew


class Failed(Exception):
    """The stack could not start: the message says what and why."""


@dataclass
class Child:
    name: str
    command: list[str]
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL its process group (uvicorn's processes; a worker's die with it)."""
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def run(settings: Settings, *, api_port: int, dashboard_port: int, workers: int) -> int:
    """Serve until Ctrl-C, SIGTERM or SIGHUP (0), or until a process ends (1)."""
    if not settings.dev_mode and not (settings.dashboard_username and settings.dashboard_password):
        raise Failed(
            "the dashboard needs JOBS_DASHBOARD_USERNAME and JOBS_DASHBOARD_PASSWORD outside "
            "dev mode: set them, or JOBS_DEV_MODE=1 on a developer's machine"
        )
    for what, port in (("api", api_port), ("dashboard", dashboard_port)):
        localservers.check_free(what, HOST, port)
    began = time.monotonic()
    interrupted: list[int] = []
    _on_stop_signals(lambda signum, _frame: interrupted.append(signum))
    local = localservers.ensure(settings)
    sink: MailSink | None = None
    metrics: Path | None = None
    children = [
        Child("api", ["jobsvc", "api", "--port", str(api_port)], api_port),
        Child("worker", ["jobsvc", "worker", "--processes", str(workers)]),
        Child("reconciler", ["jobsvc", "reconcile"]),
        Child("dashboard", ["jobsvc", "dashboard", "--port", str(dashboard_port)], dashboard_port),
    ]
    try:
        env = {**os.environ, **local.env}
        if not env.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics = _metrics_dir(settings)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        env.setdefault("JOBS_API_GRACE_S", API_GRACE_S)
        if settings.dev_mode:
            sink = _mail_sink(settings)
            env.update(_dev_env(settings, sink))
        if not interrupted:
            _prepare_database(env, interrupted)
        if interrupted:
            log.info("stopped before the stack started")
            return 0
        env[lease.PARENT_ENV] = str(os.getpid())  # each ends with this process
        for child in children:
            child.proc = subprocess.Popen(
                _bin(child.command),
                env=env,
                cwd=PROJECT_ROOT,
                start_new_session=True,  # the terminal's Ctrl-C reaches this process only
            )
        ended = _wait_ready(children, interrupted)
        if ended is None and not interrupted:
            log.info(
                "ready in %.1f s: api on http://%s:%d, dashboard on http://%s:%d, %d worker "
                "process%s; Ctrl-C stops everything",
                time.monotonic() - began,
                HOST,
                api_port,
                HOST,
                dashboard_port,
                workers,
                "" if workers == 1 else "es",
            )
            ended = _supervise(children, interrupted)
        if ended is not None:
            assert ended.proc is not None
            code = ended.proc.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            log.error("%s %s (its lines above say why); stopping the rest", ended.name, how)
        return 0 if ended is None else 1
    finally:
        _stop(children, interrupted)
        if sink is not None:
            sink.stop()
        local.stop()
        if metrics is not None:
            shutil.rmtree(metrics, ignore_errors=True)


def _on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    # Ctrl-C stops everything, even where a shell started this with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _mail_sink(settings: Settings) -> MailSink | None:
    """A mail sink for `send_email`, unless its server is configured."""
    if {"smtp_host", "smtp_port"} & settings.model_fields_set:
        return None
    sink = MailSink(settings.data_dir.resolve() / "mail", settings.mail_sink_port)
    try:
        sink.start()
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("aiosmtpd"):
            raise
        raise Failed(
            "the dev-mode mail sink needs aiosmtpd: install jobsvc[local] or set JOBS_SMTP_HOST"
        ) from None
    log.info(
        "dev mode: mail sink on %s:%d for send_email; each message is kept in %s",
        HOST,
        sink.port,
        sink.directory,
    )
    return sink


def _dev_env(settings: Settings, sink: MailSink | None) -> dict[str, str]:
    """What dev mode sets for the stack's processes: the mail sink as send_email's server,
    a callback secret, and webhooks (callbacks too) allowed to reach loopback addresses."""
    env: dict[str, str] = {}
    if sink is not None:
        env |= {"JOBS_SMTP_HOST": HOST, "JOBS_SMTP_PORT": str(sink.port)}
    if settings.callback_secret is None:
        path = dev_callback_secret(settings.data_dir.resolve())
        env["JOBS_CALLBACK_SECRET"] = path.read_text().strip()
        log.info("dev mode: callbacks are signed with the development secret in %s", path)
    if not {"webhook_allow_private", "webhook_allow_loopback"} & settings.model_fields_set:
        env["JOBS_WEBHOOK_ALLOW_LOOPBACK"] = "true"  # a receiver on this machine, nothing more
    return env


def dev_callback_secret(data_dir: Path) -> Path:
    """The file that holds dev mode's callback secret: made once, kept between runs, made
    again if it holds less than `SECRET_MIN_CHARS`."""
    path = data_dir / "callback-secret"
    with contextlib.suppress(FileNotFoundError):
        if len(path.read_text().strip()) >= SECRET_MIN_CHARS:
            return path
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written whole beside it, then renamed over it: an interruption leaves no empty file.
    fd, temp = tempfile.mkstemp(prefix=".callback-secret-", dir=data_dir)  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return path


def _prepare_database(env: dict[str, str], interrupted: list[int]) -> None:
    for step in (["jobsvc", "db", "create"], ["alembic", "upgrade", "head"]):
        done = subprocess.run(_bin(step), env=env, cwd=PROJECT_ROOT, check=False)
        if interrupted:  # Ctrl-C reached the step too: it did not fail, it was stopped
            return
        if done.returncode != 0:
            raise Failed(f"{' '.join(step)} failed (exit {done.returncode})")


def _wait_ready(children: list[Child], interrupted: list[int]) -> Child | None:
    """Wait until every child with a port answers HTTP; a child that ended."""
    deadline = time.monotonic() + READY_S
    waiting = [child for child in children if child.port is not None]
    while waiting and not interrupted:
        for child in children:
            if not child.running:
                return child
        waiting = [c for c in waiting if not _answers(c.port or 0)]
        if time.monotonic() > deadline:
            names = ", ".join(f"{c.name} (port {c.port})" for c in waiting)
            raise Failed(f"not listening after {READY_S:.0f} s: {names}")
        time.sleep(0.1)
    return None


def _answers(port: int) -> bool:
    """An HTTP server on the port answers (any status): its app has started."""
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


def _supervise(children: list[Child], interrupted: list[int]) -> Child | None:
    """Wait until Ctrl-C, SIGTERM or SIGHUP (None), or until a child exits (that child)."""
    while not interrupted:
        for child in children:
            if not child.running:
                return child
        time.sleep(0.2)
    return None


def _stop(children: list[Child], interrupted: list[int]) -> None:
    """Ask every child to stop; stop running jobs after GRACE_S; kill the rest at STOP_S.
    A second Ctrl-C skips the waiting."""
    alive = [child for child in children if child.running]
    if not alive:
        return
    began = time.monotonic()
    asked = len(interrupted)
    log.info("stopping %s", ", ".join(child.name for child in alive))
    for child in alive:
        child.signal(signal.SIGTERM)

    def wait(until: float) -> list[Child]:
        while time.monotonic() < began + until and len(interrupted) <= asked:
            if not any(child.running for child in alive):
                break
            time.sleep(0.05)
        return [child for child in alive if child.running]

    left = wait(GRACE_S)
    if len(interrupted) == asked:
        for child in left:
            if child.name == "worker":
                log.warning(
                    "worker: stopping running jobs now (as a lost worker's, each runs again "
                    "if it has attempts left)"
                )
                child.signal(signal.SIGTERM)  # the second one: RQ's cold stop
        left = wait(STOP_S)
    for child in left:
        log.warning("%s did not stop: killed", child.name)
        child.kill()
    log.info("stopped in %.1f s", time.monotonic() - began)


def _metrics_dir(settings: Settings) -> Path:
    """A new directory of this run's own where API, worker and reconciler keep their
    metrics, so /metrics adds them up; another stack's is left alone."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="metrics-", dir=data_dir))


def _bin(command: list[str]) -> list[str]:
    """A console script from the same environment as this one."""
    return [str(Path(sys.executable).parent / command[0]), *command[1:]]
