"""A retry whose re-enqueue fails is dead-lettered and recorded as failed, never silently acked.

RabbitMQ is made to refuse the worker's publishes (guest loses write permission on the vhost)
after the worker started, so dramatiq's Retries cannot re-enqueue the failing command. Stock
dramatiq would log that and ack the message (dramatiq PR #545): gone. Here it must be in the
dead-letter queue and ``failed`` in the inbox.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest

from schemas.commands import SendChatMessage, send_command_ids
from schemas.queues import CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.amqp import publish_commands
from tests.support.processes import Processes


@pytest.fixture
def own_vhost(iso):
    vhost = f"{iso.vhost}_retries"
    isolation.create_vhost(vhost)
    yield vhost
    isolation.delete_vhost(vhost)


async def dead_letters(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(f"{queue}.XQ", passive=True)
        return declared.declaration_result.message_count


async def test_a_retry_that_cannot_be_enqueued_is_dead_lettered_and_recorded(own_vhost, stack_env, ledger):
    amqp_url = f"{isolation.AMQP_BASE}/{own_vhost}"
    user = f"retry-{time.time_ns()}"
    command_id, message_id = send_command_ids(user, None)
    poison = SendChatMessage(  # PostgreSQL refuses NUL in text: every attempt fails
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id="room\x00",
        message="hola",
        client_message_id=None,
        accepted_at_ms=int(time.time() * 1000),
    )
    await publish_commands(amqp_url, CHAT_QUEUE, SEND_MESSAGE_ACTOR, [poison])
    isolation.set_permissions(own_vhost, configure=".*", write="", read=".*")  # no publishing from now on
    procs = Processes({**stack_env, "AMQP_URL": amqp_url})
    try:
        worker = procs.workers("chat", processes=1, threads=1)
        deadline = time.monotonic() + 30  # stock dramatiq acks it instead: never failed, never dead
        while time.monotonic() < deadline and not await ledger.fetchval(
            "SELECT true FROM inbox WHERE command_id = $1 AND status = 'failed'", command_id
        ):
            await asyncio.sleep(0.2)
        assert "retry.enqueue_failed" in worker.log()
    finally:
        isolation.set_permissions(own_vhost, configure=".*", write=".*", read=".*")
        procs.stop_all()
    row = await ledger.fetchrow("SELECT status, result FROM inbox WHERE command_id = $1", command_id)
    assert row is not None and row["status"] == "failed"
    assert await dead_letters(amqp_url, CHAT_QUEUE) == 1
