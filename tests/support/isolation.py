"""Each test run gets its own PostgreSQL database, RabbitMQ vhost and Redis key prefix."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg
import redis

PG_BASE = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
AMQP_BASE = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

JWT_SECRET = "test-jwt-secret-" + secrets.token_hex(8)
ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(8)
# Provider webhook secrets of the e2e stack. PUBLIC_BASE_URL differs from the nodes' own URL, so
# the tests prove that signatures are checked against the public URL.
TWILIO_AUTH_TOKEN = "test-twilio-token-" + secrets.token_hex(8)
META_APP_SECRET = "test-meta-secret-" + secrets.token_hex(8)
META_VERIFY_TOKEN = "test-meta-verify-" + secrets.token_hex(8)
PUBLIC_BASE_URL = "https://gatekeeper.example.com"


@dataclass(frozen=True)
class Isolation:
    run_id: str
    database: str
    vhost: str
    key_prefix: str

    @property
    def database_url(self) -> str:
        return f"{PG_BASE}/{self.database}"

    @property
    def amqp_url(self) -> str:
        return f"{AMQP_BASE}/{quote(self.vhost, safe='')}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a Gatekeeper process of this run."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "AMQP_URL", "REDIS_URL", "KEY_PREFIX", "JWT_SECRET", "ADMIN_TOKEN"}
        }
        env.update(
            DATABASE_URL=self.database_url,
            AMQP_URL=self.amqp_url,
            REDIS_URL=REDIS_BASE,
            KEY_PREFIX=self.key_prefix,
            JWT_SECRET=JWT_SECRET,
            ADMIN_TOKEN=ADMIN_TOKEN,
            LOG_FORMAT="json",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
            # A CI box running browsers and several stacks can stall a node for a second; tests that
            # are not about it must not see `overloaded` for it (test_backpressure.py sets its own).
            SEND_MAX_LOOP_LAG_MS="0",
        )
        env.update(extra)
        return env


def new_isolation() -> Isolation:
    run_id = f"{os.getpid()}_{secrets.token_hex(3)}"
    return Isolation(run_id, f"gk_test_{run_id}", f"gk_test_{run_id}", f"gktest{run_id}")


def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)


def create_vhost(vhost: str) -> None:
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")


def set_permissions(vhost: str, *, configure: str, write: str, read: str) -> None:
    """guest's permissions on ``vhost`` (regular expressions; "" refuses everything)."""
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", configure, write, read)


def delete_vhost(vhost: str) -> None:
    _rabbitmqctl("delete_vhost", vhost)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def delete_redis_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_BASE)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()
