"""Publish commands straight into a queue, as a redelivery, a replay or another service would;
count what a queue holds."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterable

import aio_pika

from infra.amqp import QueueType, connect_first, encode_actor_message, topology
from schemas.base import Command


async def publish_commands(
    amqp_url: str, queue: str, actor: str, commands: Iterable[Command], *, queue_type: QueueType = "classic"
) -> None:
    """Each command gets a fresh AMQP message id; RabbitMQ confirms every one (persistent, mandatory)."""
    connection = await connect_first(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for name, arguments in topology(queue, queue_type):
            await channel.declare_queue(name, durable=True, arguments=arguments)
        for cmd in commands:
            message_id = str(uuid.uuid4())
            body = encode_actor_message(queue, actor, {"command": cmd.model_dump(mode="json")}, message_id)
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id),
                routing_key=queue,
                mandatory=True,
            )


def queue_counts(vhost: str, queue: str) -> tuple[int, int]:
    """``(ready, unacknowledged)`` messages of ``queue`` in ``vhost`` (``rabbitmqctl``); ``(0, 0)`` if none."""
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name", "messages_ready", "messages_unacknowledged"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    return 0, 0
