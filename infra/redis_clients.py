"""Every Redis client Gatekeeper opens: plain commands, and Socket.IO's pub/sub manager.

redis-py looks its own version up in the installed package's metadata (``importlib.metadata``)
each time it opens a connection, about 20 ms of CPU. A worker that publishes results from
hundreds of coroutines at once opens a connection per concurrent publish, so that lookup alone
held an AI worker's event loop for seconds while it warmed up. Handing it the version it
already computed at import makes a new connection cheap.

Every pool is a *blocking* pool of ``REDIS_MAX_CONNECTIONS``: in a burst (a thousand sockets
closing at once) a command waits up to ``REDIS_POOL_TIMEOUT_S`` for a free connection instead of
failing at once with ``MaxConnectionsError``, as redis-py's default pool of 100 did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypedDict
from urllib.parse import urlsplit

import redis
import socketio
import structlog
from engineio import packet as eio_packet
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from socketio import packet as sio_packet
from socketio.redis_manager import parse_redis_sentinel_url
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from schemas.channels import APPLIED_CHANNEL, room_channel

log = structlog.get_logger(__name__)


class _ClientOptions(TypedDict):
    lib_version: str


CLIENT_OPTIONS: _ClientOptions = {"lib_version": redis.__version__}
ROOM_PREFIX = room_channel("")  # the Socket.IO room of a chat room: "r/<roomId>"
RESUBSCRIBE_FIRST_S = 0.05
RESUBSCRIBE_MAX_S = 2.0
BATCH_ROOM = "gatekeeper:result-batch"  # joined by no socket
BATCH_EVENT = "resultBatch"
DEFAULT_MAX_CONNECTIONS = 500
DEFAULT_POOL_TIMEOUT_S = 5.0
RESULT_PUBLISH_RETRY_S = 5.0  # a worker retries a results publish this long, then fails the command
SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)


def check_redis_url(url: str) -> None:
    """Refuse at start-up what would only fail at the first command, e.g. a sentinel URL without its master's name."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"REDIS_URL: scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if scheme == SENTINEL_SCHEME:
        sentinels, service, _ = parse_redis_sentinel_url(url)
        if not sentinels or not service:
            raise ValueError("REDIS_URL: redis+sentinel://host:port[,host:port...]/<db>/<master name>")


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (asks for the current master on each new connection) that waits when full."""


def redis_client(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    decode_responses: bool = True,
) -> Redis:
    """A client of the Redis master: ``url`` itself, or the one Sentinel names for a redis+sentinel:// URL.

    Through Sentinel the client asks for the current master on each new connection, so after a
    failover it follows the promoted replica the way Socket.IO's manager (same URL) does.
    """
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        sentinels, service, options = parse_redis_sentinel_url(url)
        sentinel = Sentinel(sentinels, decode_responses=decode_responses, **CLIENT_OPTIONS, **options)
        return sentinel.master_for(
            service,
            connection_pool_class=BlockingSentinelConnectionPool,
            max_connections=max_connections,
            timeout=pool_timeout_s,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=decode_responses,
        **CLIENT_OPTIONS,
        max_connections=max_connections,
        timeout=pool_timeout_s,
    )
    return Redis.from_pool(pool)


class ResultPublishFailed(RuntimeError):
    """A worker could not publish results to Redis: the command fails, and its retry publishes them."""


class _PooledRedisManager(socketio.AsyncRedisManager):
    """Socket.IO's Redis manager on a client built by :func:`redis_client` (a blocking pool of our size).

    python-socketio gives a publish two tries and then drops it with a log line. A node's own emits
    keep that best effort; a worker's results (``write_only``) are retried for ``publish_retry_s``
    and then raise :class:`ResultPublishFailed`, so the command is retried instead of acked with its
    results lost (and its stored emits, never marked published, go out with the retry).
    """

    connected: bool  # python-socketio's (untyped): whether ``redis`` and ``pubsub`` are made

    def __init__(
        self,
        url: str,
        channel: str,
        write_only: bool,
        max_connections: int,
        pool_timeout_s: float,
        publish_retry_s: float = RESULT_PUBLISH_RETRY_S,
    ):
        super().__init__(url, channel=channel, write_only=write_only, redis_options=dict(CLIENT_OPTIONS))
        self._max_connections = max_connections
        self._pool_timeout_s = pool_timeout_s
        self._publish_retry_s = publish_retry_s

    async def _publish(self, data: Any) -> Any:
        if not self.write_only:
            return await super()._publish(data)
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._publish_retry_s),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            retry=retry_if_exception_type((redis.RedisError, OSError)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if not self.connected:
                        self._redis_connect()
                    try:
                        return await self.redis.publish(self.channel, self.json.dumps(data))
                    except (redis.RedisError, OSError):
                        self.connected = False  # the next attempt makes a new client
                        raise
        except (redis.RedisError, OSError) as exc:
            raise ResultPublishFailed(f"results not published to Redis: {exc!r}") from exc
        return None

    def _redis_connect(self) -> None:
        # Replaces the manager's own client (redis-py's default pool: 100 connections, then errors).
        # Its publish retries by calling this again: the previous client is dropped, not reused.
        self.redis = redis_client(
            self.redis_url,
            decode_responses=False,
            max_connections=self._max_connections,
            pool_timeout_s=self._pool_timeout_s,
        )
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True


class RoomGate(Protocol):
    """What a node puts between its result stream and its sockets for room messages (``seq``)."""

    async def deliver(
        self, room_id: str, message: dict[str, Any], recipients: Sequence[tuple[str, str]], send: Any
    ) -> None: ...

    async def resync(self, recipients_of: Any, send: Any) -> None: ...


class BatchingRedisManager(_PooledRedisManager):
    """The manager, plus two things it does per batch instead of per emit.

    :meth:`emit_many` publishes many emits (a worker's whole batch of results) as ONE Redis message;
    every node that receives it hands each emit to its own sockets. And a node delivers an emit to
    its sockets by encoding the packet once and handing it to each recipient's transport in turn,
    without the task per recipient python-socketio makes.

    A batch of two or more travels as an ``emit`` to a room nobody joins (:data:`BATCH_ROOM`), so a
    node that predates batches drops it instead of broadcasting it: upgrade the ingress nodes
    before the workers.

    A node's ``room_gate`` (ingress/room_sequencer.py) sees every ``newMessage`` of a room before
    its sockets do, and is told when the subscription was lost and made again, so that it can send
    what was published meanwhile. The subscription is made again at once, then with a backoff of
    up to 2 s (python-socketio's own waits 1 s, then doubles up to a minute).
    """

    room_gate: RoomGate | None = None
    applied_hook: Callable[[list[str]], None] | None = None  # the workers' applied notices (chat backlog)
    interrupted_hook: Callable[[], None] | None = None  # the subscription was lost and made again

    async def emit_many(self, emits: Sequence[tuple[str, dict[str, Any], str]], namespace: str = "/") -> None:
        """Publish ``(event, data, room)`` emits in one message, in order (one alone as a plain emit,
        which every node understands)."""
        if not emits:
            return
        if len(emits) == 1:
            event, data, room = emits[0]
            await self.emit(event, data, namespace=namespace, room=room)
            return
        items = [{"event": event, "data": data, "room": room} for event, data, room in emits]
        message = {
            "method": "emit",
            "event": BATCH_EVENT,
            "data": items,
            "namespace": namespace,
            "room": BATCH_ROOM,
            "skip_sid": None,
            "callback": None,
            "host_id": self.host_id,
        }
        await self._publish(message)
        if not self.write_only:
            await self._emit_batch(items, namespace)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("room") == BATCH_ROOM and message.get("event") == BATCH_EVENT:
            items = message.get("data")
            await self._emit_batch(items if isinstance(items, list) else [], message.get("namespace") or "/")
        elif message.get("callback") is None and not message.get("binary"):
            data = message.get("data")
            namespace, room, skip = message.get("namespace") or "/", message.get("room"), message.get("skip_sid")
            await self._emit_local(message["event"], data, namespace, room, skip)
        else:
            await super()._handle_emit(message)

    async def _emit_batch(self, items: list[Any], namespace: str) -> None:
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("event"), str):
                await self._emit_local(item["event"], [item.get("data")], namespace, item.get("room"), None)

    async def _emit_local(self, event: str, data: Any, namespace: str, room: Any, skip_sid: Any) -> None:
        """python-socketio's local emit without callbacks, minus its task per recipient."""
        if room == APPLIED_CHANNEL:
            self._applied(data)
            return
        if namespace not in self.rooms:
            return
        # The same argument rules as python-socketio: a one-item list is one argument (None: none).
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        args = list(data) if isinstance(data, list | tuple) else ([] if data is None else [data])
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        recipients = [(sid, eio_sid) for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip]
        if self.room_gate is not None and event == "newMessage" and _room_message(room, args):
            await self.room_gate.deliver(room[len(ROOM_PREFIX) :], args[0], recipients, self._sender(namespace))
            return
        await self._send_packets(namespace, [event, *args], recipients)

    def _sender(self, namespace: str) -> Any:
        async def send(message: dict[str, Any], recipients: list[tuple[str, str]]) -> None:
            await self._send_packets(namespace, ["newMessage", message], recipients)

        return send

    async def _send_packets(self, namespace: str, data: list[Any], recipients: Sequence[tuple[str, str]]) -> None:
        """One event, encoded once, handed to each recipient's transport."""
        if not recipients:
            return
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=data).encode()
        packets = [
            eio_packet.Packet(eio_packet.MESSAGE, p) for p in (encoded if isinstance(encoded, list) else [encoded])
        ]
        for _, eio_sid in recipients:
            for p in packets:
                await self.server._send_eio_packet(eio_sid, p)

    async def _redis_listen_with_retries(self) -> Any:
        """The subscription's messages; a lost subscription is made again, and the room gate told."""
        delay, interrupted = RESUBSCRIBE_FIRST_S, False
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                if interrupted:
                    log.info("redis.resubscribed", channel=self.channel)
                    await self._resubscribed()
                delay, interrupted = RESUBSCRIBE_FIRST_S, False
                async for message in self.pubsub.listen():
                    yield message
            except (redis.RedisError, OSError) as exc:
                log.warning("redis.subscription_lost", channel=self.channel, error=repr(exc), retry_in_s=delay)
                interrupted = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    def _applied(self, data: Any) -> None:
        notice = data[0] if isinstance(data, list) and len(data) == 1 else data
        ids = notice.get("messageIds") if isinstance(notice, dict) else None
        if self.applied_hook is not None and isinstance(ids, list):
            self.applied_hook([i for i in ids if isinstance(i, str)])

    async def _resubscribed(self) -> None:
        if self.interrupted_hook is not None:
            self.interrupted_hook()
        if self.room_gate is None or "/" not in self.rooms:
            return
        try:
            await self.room_gate.resync(
                lambda room_id: list(self.get_participants("/", room_channel(room_id))), self._sender("/")
            )
        except Exception as exc:  # never lose the subscription over it: the next gap reads back again
            log.warning("redis.resync_failed", error=repr(exc))


def _room_message(room: Any, args: list[Any]) -> bool:
    """A room's ``newMessage`` that carries its ``seq``."""
    return (
        isinstance(room, str)
        and room.startswith(ROOM_PREFIX)
        and len(args) == 1
        and isinstance(args[0], dict)
        and type(args[0].get("seq")) is int
    )


def socketio_manager(
    url: str,
    channel: str,
    *,
    write_only: bool = False,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    publish_retry_s: float = RESULT_PUBLISH_RETRY_S,
) -> BatchingRedisManager:
    """The manager that carries emits between ingress nodes and from workers, over ``channel``."""
    return BatchingRedisManager(url, channel, write_only, max_connections, pool_timeout_s, publish_retry_s)
