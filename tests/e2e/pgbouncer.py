"""A real PgBouncer (Debian's `pgbouncer`) on a loopback port, in transaction mode, in
front of the test database's server."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import make_url

from service.localservers import free_port, port_open

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# PgBouncer refuses to run as root; started as root it becomes this user (`-u`).
RUN_AS = "postgres"


class PgBouncer:
    def __init__(self, database_url: str, pool_size: int) -> None:
        url = make_url(database_url)
        self.database = url.database or ""
        self.user = url.username or "postgres"
        self.port = free_port()
        self.pool_size = pool_size
        # readable by the user it runs as (a test's tmp_path is root's alone)
        self.dir = Path(tempfile.mkdtemp(prefix="jobsvc-pgbouncer-"))
        self.dir.chmod(0o755)
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={url.host or "127.0.0.1"} port={url.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir / "users.txt"}
admin_users = {self.user}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
server_lifetime = 3600
logfile = {self.dir / "pgbouncer.log"}
"""
        )
        (self.dir / "pgbouncer.log").touch()
        for path in self.dir.iterdir():
            path.chmod(0o666 if path.suffix == ".log" else 0o644)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, like: str) -> str:
        """`like` (a DATABASE_URL) pointed at PgBouncer."""
        return make_url(like).set(host="127.0.0.1", port=self.port).render_as_string(False)

    def start(self) -> None:
        run_as = ["-u", RUN_AS] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [BINARY, *run_as, str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"pgbouncer did not listen: {self.log()}"
            time.sleep(0.05)

    def show(self, what: str) -> list[dict[str, str]]:
        """Rows of the admin console's `SHOW <what>` (POOLS, SERVERS, CLIENTS)."""
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d",
             "pgbouncer", "-A", "-F", "\t", "-P", "footer=off", "-c", f"SHOW {what}"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        header, *lines = done.stdout.splitlines()
        names = header.split("\t")
        return [dict(zip(names, line.split("\t"), strict=True)) for line in lines]

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
