"""Dead letters made for real: a PostgreSQL trigger refuses a room's messages (``Fault``, or
``DlqStack.refuse_room``), so the chat workers retry and dead-letter them; commands are published
straight to the chat queue, and ``scripts.dlq`` or the admin API lists them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg

from infra.amqp import encode_actor_message, topology
from schemas.queues import CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.admin_api import NodeUrls, call
from tests.support.commands import chat_command
from tests.support.processes import ROOT, Proc

DEAD_QUEUE = CHAT_QUEUE + ".XQ"


@dataclass
class DlqStack:
    """A chat worker pool in a run (database and vhost) of its own, and ``scripts.dlq`` against it."""

    iso: isolation.Isolation
    pool: asyncpg.Pool
    workers: Proc

    def cli(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scripts.dlq", *args],
            cwd=ROOT,
            env=self.iso.env(**env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def listed(self, *filters: str) -> list[dict[str, Any]]:
        done = self.cli("list", "--json", *filters)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["messages"]

    async def publish(self, actor: str, command: dict[str, Any]) -> str:
        connection = await aio_pika.connect(self.iso.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for name, arguments in topology(CHAT_QUEUE):
                await channel.declare_queue(name, durable=True, arguments=arguments)
            message_id = str(uuid.uuid4())
            body = encode_actor_message(CHAT_QUEUE, actor, {"command": command}, message_id)
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id),
                routing_key=CHAT_QUEUE,
                mandatory=True,
            )
        return message_id

    async def dead_count(self) -> int:
        connection = await aio_pika.connect(self.iso.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(DEAD_QUEUE, passive=True)
            return queue.declaration_result.message_count or 0

    async def wait_dead(self, expected: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while (count := await self.dead_count()) != expected:
            assert time.monotonic() < deadline, f"{count} dead messages, expected {expected}"
            await asyncio.sleep(0.3)

    async def refuse_room(self, room: str) -> None:
        """A real fault: PostgreSQL refuses this room's messages (after the charge, so it also rolls back)."""
        await self.pool.execute(
            "CREATE OR REPLACE FUNCTION dlq_test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'test fault: room % refused', NEW.room_id; END $$"
        )
        await self.pool.execute(
            f"CREATE TRIGGER dlq_test_refuse BEFORE INSERT ON messages FOR EACH ROW"
            f" WHEN (NEW.room_id = '{room}') EXECUTE FUNCTION dlq_test_refuse()"
        )

    async def fix(self) -> None:
        await self.pool.execute("DROP TRIGGER dlq_test_refuse ON messages")


def send(user: str, room: str, words: int = 1500) -> dict[str, Any]:
    """A chat send command as JSON, for ``DlqStack.publish``."""
    return chat_command(user, room, words).model_dump(mode="json")


def invalid_mark_read(user: str) -> dict[str, Any]:
    """Fails validation (no room or message id): dramatiq gives up at once, without retries."""
    return {"type": "chat.mark_read", "command_id": f"read:{uuid.uuid4()}", "user_id": user}


@dataclass
class Fault:
    """A room whose messages PostgreSQL refuses until ``fix``."""

    pool: asyncpg.Pool
    room: str
    name: str = ""

    async def start(self) -> None:
        self.name = f"admin_test_refuse_{uuid.uuid4().hex[:8]}"
        await self.pool.execute(
            f"CREATE FUNCTION {self.name}() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'test fault: room % refused', NEW.room_id; END $$"
        )
        await self.pool.execute(
            f"CREATE TRIGGER {self.name} BEFORE INSERT ON messages FOR EACH ROW"
            f" WHEN (NEW.room_id = '{self.room}') EXECUTE FUNCTION {self.name}()"
        )

    async def fix(self) -> None:
        if self.name:
            await self.pool.execute(f"DROP TRIGGER IF EXISTS {self.name} ON messages")
            await self.pool.execute(f"DROP FUNCTION IF EXISTS {self.name}()")
            self.name = ""


async def wait_listed(
    http, stack: NodeUrls, headers, message_ids: set[str], actor: str = SEND_MESSAGE_ACTOR, timeout: float = 120
) -> dict[str, dict[str, Any]]:
    """The admin API's dead letters with these message ids, once all are listed."""
    deadline = time.monotonic() + timeout
    while True:
        status, doc = await call(http, stack.url(f"/api/admin/dead-letters?actor={actor}&limit=500"), headers)
        assert status == 200, doc
        mine = {m["message_id"]: m for m in doc["messages"] if m["message_id"] in message_ids}
        if len(mine) == len(message_ids):
            return mine
        assert time.monotonic() < deadline, f"dead letters never listed: {message_ids - set(mine)}"
        await asyncio.sleep(0.5)
