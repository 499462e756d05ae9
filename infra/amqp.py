"""RabbitMQ topology and message format shared with dramatiq's RabbitmqBroker.

Ingress publishes with aio-pika (async, publisher confirms); workers consume
with dramatiq. Both must declare queues with identical arguments, or RabbitMQ
refuses the second declaration.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import aio_pika
import dramatiq
from aio_pika.abc import AbstractConnection
from dramatiq.broker import Consumer
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from schemas.queues import is_partition

DEAD_MESSAGE_TTL_MS = 7 * 86_400_000  # dramatiq's default, kept so both sides agree

QueueType = Literal["classic", "quorum"]


def amqp_urls(url: str) -> tuple[str, ...]:
    """The nodes of an ``AMQP_URL``: one URL, or several separated by ``;`` (or ``,``), tried in order."""
    urls = tuple(part.strip() for part in re.split(r"[;,]", url) if part.strip())
    if not urls:
        raise ValueError("AMQP_URL names no node")
    for node in urls:
        parts = urlsplit(node)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"AMQP_URL: {node_name(node)!r} is not an amqp:// or amqps:// URL")
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    return urls


def node_name(url: str) -> str:
    """host:port of one node's URL, for logs (never the credentials)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or '?'}:{port or 5672}"


def queue_arguments(queue_name: str, queue_type: QueueType = "classic") -> dict[str, Any]:
    """A work queue's arguments; a chat partition's has one active consumer in the whole pool."""
    arguments = _dead_lettered(queue_name, queue_type)
    if is_partition(queue_name):
        arguments["x-single-active-consumer"] = True
    return arguments


def _dead_lettered(queue_name: str, queue_type: QueueType) -> dict[str, Any]:
    arguments: dict[str, Any] = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue_name)}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    return arguments


def topology(queue_name: str, queue_type: QueueType = "classic") -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of the work, delay and dead-letter queues of one capability.

    Quorum queues (replicated with Raft across a RabbitMQ cluster) take the same dead-letter and
    TTL arguments; classic queues are declared without ``x-queue-type``, as they always were.
    """
    dead: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL_MS}
    if queue_type == "quorum":
        dead["x-queue-type"] = "quorum"
    return [
        (queue_name, queue_arguments(queue_name, queue_type)),
        (dq_name(queue_name), _dead_lettered(queue_name, queue_type)),
        (xq_name(queue_name), dead),
    ]


class TopologyBroker(RabbitmqBroker):
    """dramatiq's RabbitmqBroker declaring exactly the queues ``topology`` describes, classic or quorum.

    ``leads(partition)`` says whether this process should be a chat partition's active consumer:
    on a partition it does not lead, it registers only after ``standby_delay_s``, so that the
    process that leads it registers first and RabbitMQ makes that one active. A partition is
    consumed through ``partition_consumer(consumer, timeout_ms)`` with ``partition_prefetch``, or,
    without one, one message at a time.
    """

    def __init__(
        self,
        *,
        queue_type: QueueType = "classic",
        leads: Callable[[str], bool] | None = None,
        standby_delay_s: float = 3.0,
        partition_consumer: Callable[[Consumer, int], Consumer] | None = None,
        partition_prefetch: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.partition_consumer = partition_consumer
        self.partition_prefetch = partition_prefetch if partition_consumer else 1
        self.queue_type: QueueType = queue_type
        self.leads = leads
        self.standby_delay_s = standby_delay_s
        self._shutting_down = threading.Event()

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        if signal == "worker_shutdown":
            self._shutting_down.set()  # a consumer still waiting out its standby delay stops waiting
        super().emit_before(signal, *args, **kwargs)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return queue_arguments(queue_name, self.queue_type)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """A chat partition hands over one message at a time, so its messages are applied in order
        (with the single active consumer its queue is declared with, in the whole pool)."""
        if not is_partition(queue_name):
            return super().consume(queue_name, prefetch, timeout)
        if self.leads is not None and not self.leads(queue_name):
            self._shutting_down.wait(self.standby_delay_s)  # runs in this queue's own consumer thread
        consumer = super().consume(queue_name, self.partition_prefetch, timeout)
        return self.partition_consumer(consumer, timeout) if self.partition_consumer else consumer

    def _declare_dq_queue(self, queue_name: str) -> Any:
        name, arguments = topology(queue_name, self.queue_type)[1]
        return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)

    def _declare_xq_queue(self, queue_name: str) -> Any:
        name, arguments = topology(queue_name, self.queue_type)[2]
        return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)


async def connect_first(url: str, **kwargs: Any) -> AbstractConnection:
    """A plain (not robust) connection to the first node of ``url`` that answers."""
    error: BaseException | None = None
    for node in amqp_urls(url):
        try:
            return await aio_pika.connect(node, **kwargs)
        except (aio_pika.exceptions.AMQPError, OSError) as exc:
            error = exc
    assert error is not None
    raise error


def encode_actor_message(
    queue_name: str, actor_name: str, kwargs: dict[str, Any], message_id: str, options: dict[str, Any] | None = None
) -> bytes:
    """A message body that dramatiq's consumer decodes exactly as if ``actor.send`` made it."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=actor_name,
        args=(),
        kwargs=kwargs,
        options=options or {},
        message_id=message_id,
    ).encode()
