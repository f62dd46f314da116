"""Real Redis with automatic failover on loopback ports: `redis-server` as master and
replica, three `redis-server --sentinel` watching them."""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from service.localservers import free_port, port_open, redis_server_binary

MASTER_NAME = "jobsvc"


class RedisWithSentinels:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jobsvc-sentinel-"))
        ports: set[int] = set()
        while len(ports) < 5:  # five distinct ones
            ports.add(free_port())
        self.master_port, self.replica_port, *self.sentinel_ports = sorted(ports)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def sentinels(self) -> str:
        """REDIS_SENTINELS for the service."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _run(self, name: str, port: int, *args: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps a copy)
        with log:
            self.procs[name] = subprocess.Popen(
                [redis_server_binary(), *args], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert self.procs[name].poll() is None, (self.dir / f"{name}.log").read_text()
            assert time.monotonic() < deadline, f"{name} did not listen"
            time.sleep(0.05)

    def start(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        for name, port, more in (
            ("master", self.master_port, []),
            ("replica", self.replica_port, ["--replicaof", "127.0.0.1", str(self.master_port)]),
        ):
            (self.dir / name).mkdir()
            self._run(
                name, port, "--port", str(port), "--dir", str(self.dir / name), *common, *more
            )
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel{i}.conf"  # a sentinel rewrites its own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 4000\n"
            )
            self._run(f"sentinel{i}", port, str(conf), "--sentinel")
        # ready when the replica is in sync and every sentinel knows the other two
        self.wait(lambda: self._replicated() and self._sentinels_know_each_other(), 60)

    def _replicated(self) -> bool:
        info = Redis(port=self.replica_port).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_know_each_other(self) -> bool:
        for port in self.sentinel_ports:
            known = Redis(port=port, decode_responses=True).sentinel_sentinels(MASTER_NAME)
            if len(known) < 2:
                return False
        return True

    def master(self) -> int:
        """The port the sentinels give for the master now."""
        _, port = Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def kill_master(self) -> None:
        self.procs["master"].kill()
        self.procs["master"].wait()

    def wait(self, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (OSError, RedisError):
                pass
            assert time.monotonic() < deadline, f"Redis and its sentinels did not settle: {self}"
            time.sleep(0.2)

    def __str__(self) -> str:
        """What each server is doing (for a failure's message)."""
        logs = {
            path.name: path.read_text(errors="replace")[-1500:]
            for path in sorted(self.dir.glob("*.log"))
        }
        alive = {name: proc.poll() is None for name, proc in self.procs.items()}
        return f"alive {alive}; logs {logs}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
