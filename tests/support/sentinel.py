"""A real Redis Sentinel for tests: ``redis-server --sentinel`` watching the test Redis as its master.

With a quorum of 1 and no replicas it never fails anything over; it only answers "who is the
master", which is what Gatekeeper's clients ask it. The test that starts it stops it, by pid.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from tests.support.isolation import REDIS_BASE
from tests.support.processes import free_port


@dataclass(frozen=True)
class RunningSentinel:
    port: int
    master: str
    db: int

    @property
    def url(self) -> str:
        """REDIS_URL for Gatekeeper processes: the master is found through this sentinel."""
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.db}/{self.master}"


def _redis_server() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise RuntimeError("redis-server is not installed")
    return found


@contextmanager
def sentinel() -> Iterator[RunningSentinel]:
    base = urlsplit(REDIS_BASE)
    host, port = base.hostname or "127.0.0.1", base.port or 6379
    db = int(base.path.lstrip("/") or 0)
    master = f"gkmaster{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="gk-sentinel-") as folder:
        conf = Path(folder) / "sentinel.conf"  # sentinel rewrites its own file: it must be writable
        sentinel_port = free_port()
        conf.write_text(
            f"port {sentinel_port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {master} {host} {port} 1\n"
            f"sentinel down-after-milliseconds {master} 60000\n"
        )
        log = open(Path(folder) / "sentinel.log", "wb")
        proc = subprocess.Popen([_redis_server(), str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_master(sentinel_port, master, proc, Path(folder) / "sentinel.log")
            yield RunningSentinel(sentinel_port, master, db)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            log.close()


def _wait_for_master(port: int, master: str, proc: subprocess.Popen, log_path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sentinel exited:\n{log_path.read_text(errors='replace')[-2000:]}")
        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            try:
                if client.sentinel_get_master_addr_by_name(master):
                    return
            finally:
                client.close()
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"sentinel on {port} does not know {master} after {timeout}s")
