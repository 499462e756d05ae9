"""RabbitMQ topology and message format shared with dramatiq's RabbitmqBroker.

Ingress publishes with aio-pika (async, publisher confirms); workers consume
with dramatiq. Both must declare queues with identical arguments, or RabbitMQ
refuses the second declaration.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.common import dq_name, xq_name

DEAD_MESSAGE_TTL_MS = 7 * 86_400_000  # dramatiq's default, kept so both sides agree


def queue_arguments(queue_name: str) -> dict[str, Any]:
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue_name)}


def topology(queue_name: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of the work, delay and dead-letter queues of one capability."""
    return [
        (queue_name, queue_arguments(queue_name)),
        (dq_name(queue_name), queue_arguments(queue_name)),
        (xq_name(queue_name), {"x-message-ttl": DEAD_MESSAGE_TTL_MS}),
    ]


def encode_actor_message(queue_name: str, actor_name: str, kwargs: dict[str, Any], message_id: str) -> bytes:
    """A message body that dramatiq's consumer decodes exactly as if ``actor.send`` made it."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=actor_name,
        args=(),
        kwargs=kwargs,
        options={},
        message_id=message_id,
    ).encode()
