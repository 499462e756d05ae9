"""Publish commands to RabbitMQ with publisher confirms, without blocking the event loop."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import structlog
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from infra.amqp import encode_actor_message, topology
from schemas.base import Command

log = structlog.get_logger(__name__)


class PublishFailed(Exception):
    """RabbitMQ did not confirm the command in time; it may not be durable."""


class CommandPublisher:
    def __init__(
        self, url: str, queues: tuple[str, ...], timeout_s: float, connection_name: str = "gatekeeper"
    ) -> None:
        self._connection_name = connection_name
        self._url = url
        self._queues = queues
        self._timeout_s = timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._connector: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Connect in the background: a node whose broker is down still starts, and reports degraded."""
        self._connector = asyncio.create_task(self._connect_until_up())

    async def _connect_until_up(self) -> None:
        delay = 0.2
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self._url, client_properties={"connection_name": self._connection_name}
                )
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                for queue in self._queues:
                    for name, arguments in topology(queue):
                        await channel.declare_queue(name, durable=True, arguments=arguments)
            except (aio_pika.exceptions.AMQPError, OSError) as exc:
                log.warning("amqp.connect_failed", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._connection, self._channel = connection, channel
            self._ready.set()
            log.info("amqp.connected")
            return

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
        if self._connection is not None:
            await self._connection.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def publish(self, queue: str, actor: str, command: Command) -> None:
        """Return once RabbitMQ has confirmed a persistent copy; raise PublishFailed otherwise."""
        await self.publish_payload(queue, actor, command.model_dump(mode="json"))

    async def publish_payload(self, queue: str, actor: str, payload: dict) -> None:
        """Publish an already serialized command (a stored follow-up, a replayed event)."""
        if self._channel is None:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._ready.wait()  # first use, while the first connection is still being made
            except TimeoutError:
                raise PublishFailed("not connected to RabbitMQ") from None
        if self._channel is None or not self.connected:
            raise PublishFailed("not connected to RabbitMQ")
        message_id = str(uuid.uuid4())
        body = encode_actor_message(queue, actor, {"command": payload}, message_id)
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=message_id,
            correlation_id=payload.get("command_id"),
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._channel.default_exchange.publish(message, routing_key=queue, mandatory=True)
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            log.warning("publish.failed", queue=queue, actor=actor, error=repr(exc))
            raise PublishFailed(repr(exc)) from None
