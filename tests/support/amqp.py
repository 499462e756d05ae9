"""Publish commands straight into a queue, as a redelivery, a replay or another service would."""

from __future__ import annotations

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
