"""Browse, requeue and purge dramatiq's dead-letter queues (``<queue>.XQ``) without losing a message.

How a queue is browsed non-destructively: on one channel we ``basic.get`` every
message *without* acking it. A message fetched and not yet acked is invisible to
other consumers but still owned by the queue; as long as it stays unacked a
second ``basic.get`` on the same channel returns the next one, so one pass sees
each dead message exactly once. When the channel closes, RabbitMQ returns every
message still unacked to the queue at its original position, so a listing never
loses or reorders anything. ``requeue`` and ``purge`` ack only the messages they
matched (``requeue`` only after RabbitMQ has confirmed their copy on the work
queue); everything else goes back untouched when the channel closes.

A message dead-letters when dramatiq gives up on it and nacks it with
``requeue=False``; RabbitMQ then routes the body *as it was delivered* to
``<queue>.XQ`` and adds an ``x-death`` header (queue, reason, time). The body
carries ``options.retries`` and ``options.traceback`` written by the Retries
middleware when it re-enqueued the message for its last retry, so an actor with
``max_retries=0`` has no traceback here; its error is in the inbox row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import dramatiq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from dramatiq.common import q_name, xq_name

from infra.amqp import connect_first
from schemas.queues import capability_of, queues_of

TRACEBACK_TAIL_LINES = 6
# Options dramatiq writes while retrying: dropped on requeue so the message gets a fresh set of retries.
RETRY_OPTIONS = ("retries", "traceback", "requeue_timestamp", "eta")


@dataclass(frozen=True)
class Filters:
    queues: tuple[str, ...]
    actor: str | None = None
    since: dt.datetime | None = None
    limit: int | None = None
    message_ids: frozenset[str] | None = None  # exactly these (what an operator confirmed), if set

    def matches(self, dead: DeadMessage) -> bool:
        if self.message_ids is not None and dead.message_id not in self.message_ids:
            return False
        if self.actor is not None and dead.actor != self.actor:
            return False
        moment = dead.failed_at or dead.enqueued_at
        return self.since is None or (moment is not None and moment >= self.since)


@dataclass
class DeadMessage:
    queue: str  # the work queue it came from (a chat partition goes back to plain chat: see target_queue)
    actor: str | None
    message_id: str | None
    command_id: str | None
    command_type: str | None
    enqueued_at: dt.datetime | None
    failed_at: dt.datetime | None
    retries: int
    traceback: str | None
    error: str | None = None
    body: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def target_queue(self) -> str:
        """Where a requeue sends it: its capability's queue. A chat partition's dead letter goes to the
        plain ``chat`` queue, which always exists and whose workers run every chat actor (actors are
        found by name): a dead letter is out of its room's order anyway."""
        return capability_of(self.queue)

    @property
    def traceback_tail(self) -> list[str]:
        if not self.traceback:
            return []
        # Python 3.11's ^^^ markers carry no information in a short tail.
        lines = [line for line in self.traceback.rstrip().splitlines() if line.strip(" ^~")]
        return lines[-TRACEBACK_TAIL_LINES:]

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "actor": self.actor,
            "message_id": self.message_id,
            "command_id": self.command_id,
            "command_type": self.command_type,
            "enqueued_at": self.enqueued_at.isoformat() if self.enqueued_at else None,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "retries": self.retries,
            "error": self.error,
            "traceback_tail": self.traceback_tail,
        }


def _from_ms(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return None


def _death_time(headers: dict[str, Any]) -> dt.datetime | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        moment = deaths[0].get("time")
        if isinstance(moment, dt.datetime):
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return None


def parse(queue: str, raw: AbstractIncomingMessage) -> DeadMessage:
    """What an operator needs to know about one dead message; tolerant of bodies dramatiq cannot decode."""
    try:
        message = dramatiq.Message.decode(raw.body)
    except Exception:
        return DeadMessage(
            queue=queue,
            actor=None,
            message_id=raw.message_id,
            command_id=None,
            command_type=None,
            enqueued_at=None,
            failed_at=_death_time(dict(raw.headers or {})),
            retries=0,
            traceback=None,
            error="undecodable message body",
        )
    options = message.options or {}
    command = message.kwargs.get("command") if isinstance(message.kwargs, dict) else None
    command = command if isinstance(command, dict) else {}
    traceback = options.get("traceback") if isinstance(options.get("traceback"), str) else None
    tail = [line for line in (traceback or "").rstrip().splitlines() if line.strip()]
    return DeadMessage(
        queue=queue,  # the work queue whose dead letters these are (the body may name its .DQ)
        actor=message.actor_name,
        message_id=message.message_id,
        command_id=command.get("command_id") if isinstance(command.get("command_id"), str) else None,
        command_type=command.get("type") if isinstance(command.get("type"), str) else None,
        enqueued_at=_from_ms(message.message_timestamp),
        failed_at=_death_time(dict(raw.headers or {})),
        retries=int(options.get("retries") or 0),
        traceback=traceback,
        error=tail[-1] if tail else None,
        body=message.asdict(),
    )


def fresh_body(dead: DeadMessage) -> bytes:
    """The dead message addressed to its target queue, with the retry bookkeeping reset."""
    assert dead.body is not None
    body = dict(dead.body)
    body["queue_name"] = dead.target_queue
    body["options"] = {k: v for k, v in (body.get("options") or {}).items() if k not in RETRY_OPTIONS}
    return dramatiq.Message(**body).encode()


@asynccontextmanager
async def _connect(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    connection = await connect_first(amqp_url)  # not robust: a reconnect would invalidate delivery tags
    try:
        yield connection
    finally:
        await connection.close()


async def _fetch(channel: AbstractChannel, queue: str) -> AsyncIterator[AbstractIncomingMessage]:
    """Every message of ``queue``'s dead-letter queue, each fetched once and left unacked."""
    dlq = await channel.declare_queue(xq_name(queue), passive=True)
    while (raw := await dlq.get(no_ack=False, fail=False)) is not None:
        yield raw


Action = Callable[[AbstractChannel, DeadMessage, AbstractIncomingMessage], Any]


async def _walk(amqp_url: str, filters: Filters, action: Action | None) -> list[DeadMessage]:
    """Visit the matching dead messages, oldest first per queue; ``action`` decides whether to ack each one."""
    found: list[DeadMessage] = []
    async with _connect(amqp_url) as connection:
        for queue in filters.queues:
            if filters.limit is not None and len(found) >= filters.limit:
                break
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                async for raw in _fetch(channel, queue):
                    dead = parse(queue, raw)
                    if not filters.matches(dead):
                        continue
                    if action is not None:
                        await action(channel, dead, raw)
                    found.append(dead)
                    if filters.limit is not None and len(found) >= filters.limit:
                        break
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue  # this queue was never declared (a partition no pool consumes yet): nothing dead there
            finally:
                if not channel.is_closed:
                    await channel.close()  # unacked messages return to their places
    return found


async def browse(amqp_url: str, filters: Filters) -> list[DeadMessage]:
    return await _walk(amqp_url, filters, None)


async def requeue(amqp_url: str, filters: Filters, *, dry_run: bool = False) -> list[DeadMessage]:
    """Publish each match to its work queue (a chat partition's to ``chat``), confirmed, and only then
    ack its dead copy.

    A crash between the confirm and the ack leaves the message in both queues; the
    worker then sees the command twice, which is harmless because workers apply a
    command once per ``command_id`` (the inbox) and replay the stored outcome.
    """

    async def move(channel: AbstractChannel, dead: DeadMessage, raw: AbstractIncomingMessage) -> None:
        if dead.body is None:
            return  # undecodable: cannot be delivered to an actor; leave it for purge
        await channel.default_exchange.publish(
            aio_pika.Message(
                fresh_body(dead),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=dead.message_id,
                timestamp=dt.datetime.now(dt.UTC),  # its age in the work queue starts now (scripts.status)
            ),
            routing_key=dead.target_queue,
            mandatory=True,
        )
        await raw.ack()

    return await _walk(amqp_url, filters, None if dry_run else move)


async def purge(amqp_url: str, filters: Filters) -> list[DeadMessage]:
    async def drop(_channel: AbstractChannel, _dead: DeadMessage, raw: AbstractIncomingMessage) -> None:
        await raw.ack()

    return await _walk(amqp_url, filters, drop)


async def add_inbox_errors(db: Any, found: list[DeadMessage]) -> None:
    """Replace each message's error by the one its worker recorded in the inbox (event log), the clearest
    one: actors without retries leave no traceback in the body. ``db`` is a pool or a connection."""
    ids = [d.command_id for d in found if d.command_id]
    if not ids:
        return
    rows = await db.fetch(
        "SELECT command_id, result->>'error' AS error FROM inbox WHERE command_id = ANY($1) AND status = 'failed'",
        ids,
    )
    errors = {r["command_id"]: r["error"] for r in rows if r["error"]}
    for dead in found:
        if dead.command_id in errors:
            dead.error = errors[dead.command_id]


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-11-23T10:00``, ``2026-11-23T10:00:00+01:00`` or a relative ``90s``, ``15m``, ``2h``, ``7d``."""
    now = now or dt.datetime.now(dt.UTC)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value and value[-1] in units and value[:-1].isdigit():
        return now - dt.timedelta(seconds=int(value[:-1]) * units[value[-1]])
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def queues_for(queue: str | None, known: Iterable[str]) -> tuple[str, ...]:
    """The work queues whose dead letters a selection covers: ``queue``'s (a capability covers all of
    its work queues: ``chat`` is ``chat`` and its partitions; ``chat.p2`` is that partition alone), or
    every ``known`` one."""
    return queues_of(q_name(queue)) if queue else tuple(known)
