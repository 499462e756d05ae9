"""Publish commands to RabbitMQ with publisher confirms, without blocking the event loop.

``AMQP_URL`` may list several nodes of a cluster. The publisher connects to the first that answers
and, when that connection or its channel is lost, reconnects starting with the next node, so a
node that died is not retried first. While it is down, a publish waits for the new channel only
until the node has been without one for ``connect_wait_s`` (1 s: long enough to ride over a
failover), then fails at once with ``BrokerUnavailable``: during an outage, a sender is told within
about a second that nothing was sent, instead of each publish waiting out its own timeout. The
reconnection is retried every second at most, so the node is back within about a second of the
broker's return.

A publish that fails says whether it certainly did not reach RabbitMQ (``PublishFailed``: not
connected, the channel closed before the message was handed to it, or the broker refused it with a
nack or a return) or whether its outcome is unknown (``PublishUnconfirmed``: the confirm did not
come within PUBLISH_TIMEOUT_S, or the connection broke after the message was handed to the channel;
the message may well be queued, and applied, later). Only the first lets a caller say that nothing
was done.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from dramatiq.common import xq_name

from infra.amqp import QueueType, amqp_urls, encode_actor_message, node_name, topology
from schemas.base import Command

log = structlog.get_logger(__name__)


class PublishFailed(Exception):
    """Not published: unless it is a ``PublishUnconfirmed``, the command certainly did not reach
    RabbitMQ (or RabbitMQ refused it with a nack or a return), and nothing will apply it."""


class BrokerUnavailable(PublishFailed):
    """Not published because no broker could be reached for ``connect_wait_s``: certainly not sent."""


class PublishUnconfirmed(PublishFailed):
    """The command was handed to the channel but not confirmed: RabbitMQ may hold it, or may not."""


CONNECT_TIMEOUT_S = 5.0  # per node: a black-holed node must not stall the failover to the next
CONNECT_WAIT_S = 1.0  # how long publishes wait for a reconnection before they fail fast
RECONNECT_MAX_DELAY_S = 1.0  # the longest pause between two rounds of connection attempts


class CommandPublisher:
    def __init__(
        self,
        url: str,
        queues: tuple[str, ...],
        timeout_s: float,
        connection_name: str = "gatekeeper",
        queue_type: QueueType = "classic",
        connect_wait_s: float = CONNECT_WAIT_S,
    ) -> None:
        self._connection_name = connection_name
        self._urls = amqp_urls(url)
        self._next = 0  # index into _urls of the node to try first
        self._queues = queues
        self._queue_type: QueueType = queue_type
        self._timeout_s = timeout_s
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._connector: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._connect_wait_s = connect_wait_s
        self._down_since = time.monotonic()  # when the node last lost (or had not yet) a channel
        self._ever_connected = False

    async def start(self) -> None:
        """Connect in the background: a node whose broker is down still starts, and reports degraded."""
        self._connector = asyncio.create_task(self._connect_until_up())

    async def _connect_until_up(self) -> None:
        """Try the nodes in turn from ``_next``; back off only after a whole round failed."""
        delay = 0.2
        failed_in_round = 0
        while not self._closing:
            url = self._urls[self._next % len(self._urls)]
            try:
                connection, channel = await self._open(url)
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError) and _cancelled_by_caller():
                    raise
                # Any failure is one more failed attempt, never the end of reconnecting: aiormq,
                # for one, ends a handshake that the peer cut with CancelledError.
                self._next += 1
                failed_in_round += 1
                log.warning("amqp.connect_failed", node=node_name(url), error=repr(exc))
                if failed_in_round >= len(self._urls):
                    failed_in_round = 0
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_DELAY_S)
                continue
            self._connection, self._channel = connection, channel
            connection.close_callbacks.add(self._on_lost)
            channel.close_callbacks.add(self._on_lost)
            self._ready.set()
            self._ever_connected = True
            log.info("amqp.connected", node=node_name(url))
            return

    async def _open(self, url: str) -> tuple[AbstractConnection, AbstractChannel]:
        connection = await aio_pika.connect(
            url, client_properties={"connection_name": self._connection_name}, timeout=CONNECT_TIMEOUT_S
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for queue in self._queues:
                for name, arguments in topology(queue, self._queue_type):
                    await channel.declare_queue(name, durable=True, arguments=arguments)
        except BaseException:
            await connection.close()
            raise
        return connection, channel

    def _on_lost(self, sender: object, exc: BaseException | None = None) -> None:
        """The connection or its channel closed under us: reconnect, starting with the next node."""
        if self._closing or (sender is not self._connection and sender is not self._channel):
            return  # our own close, or a callback of a connection already replaced
        lost = self._connection
        self._ready.clear()
        self._down_since = time.monotonic()
        self._connection = self._channel = None
        self._next += 1
        log.warning("amqp.connection_lost", error=repr(exc))
        self._connector = asyncio.create_task(self._reconnect(lost))

    async def _reconnect(self, lost: AbstractConnection | None) -> None:
        if lost is not None and not lost.is_closed:
            try:
                await lost.close()  # only the channel failed: drop its connection too
            except (aio_pika.exceptions.AMQPError, OSError, RuntimeError):
                pass
        await self._connect_until_up()

    async def close(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
        if self._connection is not None:
            await self._connection.close()

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self._connection is not None and not self._connection.is_closed

    async def wait_connected(self) -> None:
        """Return once a channel is up; raise ``BrokerUnavailable`` if the node has been without one
        for ``connect_wait_s`` (at once when it already has: an outage is answered, not waited out)."""
        if self._ready.is_set():
            return
        # The first connection may take the whole publish timeout (a remote broker, TLS); after a
        # loss, a publish waits only what is left of connect_wait_s.
        wait_s = self._connect_wait_s if self._ever_connected else self._timeout_s
        budget = wait_s - (time.monotonic() - self._down_since)
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                await self._ready.wait()  # the first connection, or a failover, is under way
        except TimeoutError:
            raise BrokerUnavailable("not connected to RabbitMQ") from None

    async def publish(self, queue: str, actor: str, command: Command) -> None:
        """Return once RabbitMQ has confirmed a persistent copy; raise PublishFailed (not published)
        or its subclass PublishUnconfirmed (outcome unknown) otherwise."""
        await self.publish_payload(queue, actor, command.model_dump(mode="json"))

    async def dead_letter(self, queue: str, actor: str, payload: dict, error: str) -> None:
        """Put one command on ``queue``'s dead-letter queue (``<queue>.XQ``), as dramatiq would have
        left it after giving up: ``scripts.dlq`` lists it with ``error`` and can requeue it to ``queue``."""
        await self.publish_payload(queue, actor, payload, routing_key=xq_name(queue), options={"traceback": error})

    async def publish_payload(
        self, queue: str, actor: str, payload: dict, *, routing_key: str | None = None, options: dict | None = None
    ) -> None:
        """Publish an already serialized command (a stored follow-up, a replayed event)."""
        await self.wait_connected()
        channel = self._channel
        if channel is None or not self.connected:
            raise BrokerUnavailable("not connected to RabbitMQ")
        message_id = str(uuid.uuid4())
        body = encode_actor_message(queue, actor, {"command": payload}, message_id, options)
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=message_id,
            correlation_id=payload.get("command_id"),
            # RabbitMQ reports the head message's timestamp: the queue's oldest-message age (scripts.status).
            timestamp=dt.datetime.now(dt.UTC),
        )
        ids = _log_ids(payload)
        try:
            async with asyncio.timeout(self._timeout_s):
                await channel.default_exchange.publish(message, routing_key=routing_key or queue, mandatory=True)
        except (aio_pika.exceptions.ChannelInvalidStateError, aio_pika.exceptions.DeliveryError) as exc:
            # Raised before the frames are queued (the channel was closed), or RabbitMQ's own refusal.
            log.warning("publish.failed", queue=queue, actor=actor, error=repr(exc), **ids)
            raise PublishFailed(repr(exc)) from None
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            # The frames may have been written: RabbitMQ may hold the message though no confirm came.
            log.warning("publish.unconfirmed", queue=queue, actor=actor, error=repr(exc), **ids)
            raise PublishUnconfirmed(repr(exc)) from None
        log.info("command.published", queue=queue, actor=actor, amqp_message_id=message_id, **ids)


def _cancelled_by_caller() -> bool:
    """Whether the running task itself was asked to stop, as opposed to a library raising
    CancelledError from inside a call (aiormq does when a connection closes mid-handshake)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _log_ids(payload: dict) -> dict[str, str | list[str | None]]:
    """The command's id and type and, when it is published while another command is being
    processed (a worker's follow-up), that command's id as ``caused_by``, so a chain can be followed.
    A batch (``commands``: a list of commands) also lists its commands' ids as ``command_ids``."""
    ids = {"command_id": payload.get("command_id"), "command_type": payload.get("type")}
    parent = structlog.contextvars.get_contextvars().get("command_id")
    if parent is not None and parent != ids["command_id"]:
        ids["caused_by"] = parent
    found: dict[str, str | list[str | None]] = {key: value for key, value in ids.items() if isinstance(value, str)}
    inner = payload.get("commands")
    if isinstance(inner, list):
        found["command_ids"] = [c.get("command_id") for c in inner if isinstance(c, dict)]
    return found
