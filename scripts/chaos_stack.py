"""The isolated system a chaos run breaks: two ingress nodes and a chat pool, on services of its own.

It makes a database and a RabbitMQ vhost of its own (and drops them at the end), and starts its
own Redis server on a free port, so that restarting Redis ends a process this run started. The
nodes and the pool reach PostgreSQL and RabbitMQ through :class:`FaultProxy` instances, so that an
outage of either can be made without stopping the machine's shared servers. Every process is
started in a session of its own and ended by its pid (or its process group), never by name.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio

from scripts.bench_chat import on_server, rabbitmqctl
from scripts.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class StackConfig:
    pg: str = "postgresql://postgres@127.0.0.1:5432"
    amqp: str = "amqp://guest:guest@127.0.0.1:5672"
    pool_processes: int = 2
    pool_threads: int = 4
    rate_limits: str = "1000/1s"
    log_dir: Path = ROOT / ".run" / "chaos"


@dataclass
class ChaosStack:
    config: StackConfig
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    nodes: dict[int, subprocess.Popen] = field(default_factory=dict)  # port -> ingress node
    pool: subprocess.Popen | None = None
    redis_server: subprocess.Popen | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    admin_token: str = field(default_factory=lambda: secrets.token_hex(32))

    def __post_init__(self) -> None:
        self.name = f"gk_chaos_{self.run_id}"
        self.ports = [free_port(), free_port()]
        self.redis_port = free_port()
        self.pg_proxy = FaultProxy(urlsplit(self.config.pg).port or 5432)
        self.amqp_proxy = FaultProxy(urlsplit(self.config.amqp).port or 5672)
        self.log_dir = self.config.log_dir / self.name
        self._spawned: list[subprocess.Popen] = []

    # --- the environment ------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """Through the proxy: what the nodes and the pool use."""
        return f"{_with_port(self.config.pg, self.pg_proxy.port)}/{self.name}"

    @property
    def direct_database_url(self) -> str:
        """Straight to PostgreSQL: for the run's own checks, which must work during an outage."""
        return f"{self.config.pg}/{self.name}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "AMQP_URL": f"{_with_port(self.config.amqp, self.amqp_proxy.port)}/{self.name}",
            "REDIS_URL": self.redis_url,
            "KEY_PREFIX": f"gkchaos{self.run_id}",
            "JWT_SECRET": self.jwt_secret,
            "ADMIN_TOKEN": self.admin_token,
            "RATE_LIMITS": self.config.rate_limits,
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }

    # --- start and stop -------------------------------------------------------------------
    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await on_server(self.config.pg, f'CREATE DATABASE "{self.name}"')
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        await self.pg_proxy.start()
        await self.amqp_proxy.start()
        await self.start_redis()
        for port in self.ports:
            self.start_node(port)
        await asyncio.gather(*(self.wait_healthy(port) for port in self.ports))
        await self.start_pool()

    async def close(self) -> None:
        for proc in reversed(self._spawned):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)  # dramatiq's parent forwards it to its workers
        for proc in reversed(self._spawned):
            await self._reap(proc, timeout_s=30)
        await self.pg_proxy.close()
        await self.amqp_proxy.close()
        try:
            rabbitmqctl("delete_vhost", self.name)
        finally:
            await on_server(self.config.pg, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        with open(self.log_dir / f"{log_name}.log", "ab") as log:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._spawned.append(proc)
        return proc

    async def _reap(self, proc: subprocess.Popen, timeout_s: float) -> None:
        try:
            await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this run started for it
            await asyncio.to_thread(proc.wait)

    # --- the processes ----------------------------------------------------------------------
    def start_node(self, port: int) -> None:
        args = [sys.executable, "-m", "ingress", "--host", "127.0.0.1", "--port", str(port)]
        self.nodes[port] = self._spawn(args, f"ingress-{port}")

    async def wait_healthy(self, port: int, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self.nodes[port].poll() is not None:
                    raise RuntimeError(f"ingress on {port} exited; see {self.log_dir}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"ingress on {port} not healthy within {timeout_s:.0f} s; see {self.log_dir}")

    async def start_pool(self) -> None:
        args = [sys.executable, "-m", "workers", "--queues", "chat"]
        args += ["--processes", str(self.config.pool_processes), "--threads", str(self.config.pool_threads)]
        log_name = f"workers-{len(self._spawned)}"
        self.pool = self._spawn(args, log_name)
        log_path = self.log_dir / f"{log_name}.log"
        deadline = time.monotonic() + START_TIMEOUT_S
        while log_path.read_bytes().count(b"Worker process is ready") < self.config.pool_processes:
            if self.pool.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the chat pool did not start; see {log_path}")
            await asyncio.sleep(0.2)

    async def kill9_pool(self) -> None:
        assert self.pool is not None
        os.killpg(self.pool.pid, signal.SIGKILL)  # the parent and every worker process it forked
        await asyncio.to_thread(self.pool.wait)

    async def kill9_node(self, port: int) -> None:
        os.killpg(self.nodes[port].pid, signal.SIGKILL)
        await asyncio.to_thread(self.nodes[port].wait)

    # --- Redis, our own ------------------------------------------------------------------------
    async def start_redis(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.redis_server = self._spawn(args, "redis")
        client = redis.asyncio.Redis(port=self.redis_port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await client.ping()
                    return
                except (redis.ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill9_redis(self) -> None:
        assert self.redis_server is not None
        os.kill(self.redis_server.pid, signal.SIGKILL)
        await asyncio.to_thread(self.redis_server.wait)

    async def kill_redis_clients(self) -> int:
        """Every client connection of our Redis server is closed (``CLIENT KILL``), this one's last."""
        client = redis.asyncio.Redis(port=self.redis_port)
        try:
            killed = 0
            for kind in ("normal", "pubsub"):
                killed += int(await client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes"))
            return killed
        finally:
            await client.aclose()


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return parts._replace(netloc=f"{credentials}{host}:{port}", path="").geturl()
