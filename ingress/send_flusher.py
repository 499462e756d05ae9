"""Chat sends published in batches: one flusher per queue, one AMQP message and one confirm per flush.

A send that arrives while no flush is in flight is flushed at once (the flush starts on the next
turn of the event loop; there is no timer, so an idle node adds no latency). Sends that arrive
while a flush is in flight wait for the next one, which starts as soon as the previous one ends,
and takes at most ``max_batch`` of them (the rest wait for the one after). A flush:

1. rate-limits every sender of the batch in one Redis round trip (``RateLimiter.hit_many``); a
   refused sender gets the ``rate_limited`` rejection a single send gets and is left out;
2. publishes the others as one ``chat_send_batch`` message (``SendChatBatch``, id ``batch:<uuid>``)
   with a publisher confirm, and answers each of them from that one confirm. If the publish
   certainly did not reach RabbitMQ (``PublishFailed``), each of them gets ``internal`` (nothing was
   published, nothing charged); if its outcome is unknown (``PublishUnconfirmed``: the confirm did
   not come in time, or the connection broke after the message went out), each gets
   ``unconfirmed``: it may yet be applied and charged, so a retry must reuse its ``clientMessageId``.

While no broker can be reached (``BrokerUnavailable``: the node has been without a channel for
about a second), a flush answers each of its sends ``unavailable`` with ``retryAfterMs`` at once,
before it rate-limits them; when Redis cannot be reached for the rate limits, the sends are refused
the same way (rate limiting fails closed). In both cases nothing was published.

The sends in flight on a node (waiting, plus those of the flush under way) are bounded by
``max_in_flight`` (SEND_MAX_IN_FLIGHT): a send beyond it is refused at once, before anything is
published, with ``overloaded`` and ``retryAfterMs``, the time the flushes queued ahead of it are
expected to take (from the recent flush durations), so a slow broker makes senders back off instead
of piling up sends whose confirms would time out.

Sends are published to their room's chat partition (``schemas.queues.chat_partition``), one flusher
per partition (:class:`PartitionedSends`): a flusher publishes a flush only once the previous one is
confirmed, and each partition is applied one message at a time, so one room's sends are applied and
delivered in the order this node received them.

A flush of one command publishes it as that command alone (``chat_send_message``), logged with its
sender's log context, exactly as before batching: an idle node sends what it always sent. A batch's
``command.published`` line carries the batch id and its ``command_ids`` (infra/publisher.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from redis.exceptions import RedisError

from infra.publisher import BrokerUnavailable, PublishFailed, PublishUnconfirmed
from ingress.rate_limiter import RateDecision
from ingress.rejections import Rejected, overloaded, rate_limited, unavailable, unconfirmed
from schemas import queues
from schemas.base import Command
from schemas.commands import SendChatBatch, SendChatMessage
from schemas.queues import CHAT_PARTITION_QUEUES, chat_partition

log = structlog.get_logger(__name__)

NOT_QUEUED = "the message could not be queued; nothing was charged, retry"
INTERNAL = "internal error; nothing was charged"

RETRY_AFTER_MIN_MS = 100  # overloaded: the least and the most retryAfterMs a sender is told
RETRY_AFTER_MAX_MS = 5_000
FLUSH_ESTIMATE_S = 0.01  # the expected duration of a flush before one was measured
FLUSH_SMOOTHING = 0.2  # weight of the newest flush in the moving average of flush durations


class Publisher(Protocol):
    async def wait_connected(self) -> None: ...

    async def publish(self, queue: str, actor: str, command: Command) -> None: ...


class BatchRateLimiter(Protocol):
    async def hit_many(self, hits: Sequence[tuple[str, str]]) -> list[RateDecision]: ...


@dataclass(slots=True)
class _Send:
    command: SendChatMessage
    answer: asyncio.Future[None]
    context: contextvars.Context  # the sender's: its log fields (socket_event, sid, user_id, command_id)


class SendFlusher:
    """Batches ``SendChatMessage`` commands for one queue; ``send`` returns once RabbitMQ has it."""

    def __init__(
        self,
        publisher: Publisher,
        limiter: BatchRateLimiter,
        max_batch: int,
        *,
        max_in_flight: int = 2048,
        queue: str = queues.CHAT_QUEUE,
        actor: str = queues.SEND_MESSAGE_ACTOR,
        batch_actor: str = queues.SEND_BATCH_ACTOR,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._publisher = publisher
        self._limiter = limiter
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue = queue
        self._actor = actor
        self._batch_actor = batch_actor
        self._waiting: list[_Send] = []  # for the next flush, in arrival order
        self._task: asyncio.Task[None] | None = None  # the flushes, one after another, while sends wait
        self._flushing = 0  # sends in the flush under way
        self._flush_started: float | None = None  # time.monotonic() of the flush under way
        self._flush_s: float | None = None  # moving average of flush durations, once one was measured
        self.flushes = 0  # publishes attempted (for tests and metrics)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Sends handed in and not yet answered by a flush: waiting, or in the flush under way."""
        return len(self._waiting) + self._flushing

    @property
    def flushing(self) -> bool:
        return self._task is not None

    async def send(self, command: SendChatMessage) -> None:
        """Return once RabbitMQ has confirmed ``command`` (alone or in a batch); raise ``Rejected``
        otherwise: ``overloaded``, ``rate_limited`` or ``internal`` (not published, nothing charged),
        or ``unconfirmed`` (published, outcome unknown)."""
        if self.in_flight >= self._max_in_flight:
            raise overloaded("too many messages in flight on this node", self.retry_after_ms())
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Send(command, answer, contextvars.copy_context()))
        if self._task is None:
            # A context of its own: a batch's lines must not carry the first sender's command_id.
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        await answer

    def retry_after_ms(self) -> int:
        """When a refused send may expect room: once the flushes queued ahead of it are done, each
        taking as long as recent flushes took (or as long as the one under way has taken so far)."""
        per_flush = FLUSH_ESTIMATE_S if self._flush_s is None else self._flush_s
        if self._flush_started is not None:
            per_flush = max(per_flush, time.monotonic() - self._flush_started)
        ahead = math.ceil(len(self._waiting) / self._max_batch) + (1 if self._flushing else 0)
        estimate = math.ceil(max(ahead, 1) * per_flush * 1000)
        return min(max(estimate, RETRY_AFTER_MIN_MS), RETRY_AFTER_MAX_MS)

    async def drain(self) -> None:
        """Wait until every send handed in so far is answered (before the publisher closes)."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                self._flushing, self._flush_started = len(batch), time.monotonic()
                try:
                    await self._flush(batch)
                finally:
                    took = time.monotonic() - self._flush_started
                    seen = took if self._flush_s is None else self._flush_s
                    self._flush_s = seen + FLUSH_SMOOTHING * (took - seen)
                    self._flushing, self._flush_started = 0, None
        finally:
            self._task = None
            for send in self._waiting:  # only if cancelled: nobody waits forever
                _answer(send, Rejected("internal", NOT_QUEUED))
            self._waiting = []

    async def _flush(self, batch: list[_Send]) -> None:
        try:
            await self._publisher.wait_connected()
            try:
                admitted = await self._rate_limit(batch)
            except (RedisError, OSError) as exc:  # the rate limits cannot be checked: fail closed
                log.warning("send_flush.rate_limits_unavailable", sends=len(batch), error=repr(exc))
                for send in batch:
                    _answer(send, unavailable("Redis (rate limiting)"))
                return
            if admitted:
                await self._publish(admitted)
        except BrokerUnavailable:
            for send in batch:
                _answer(send, unavailable("RabbitMQ"))
        except Exception:  # never leave a sender without an answer
            log.exception("send_flush.failed", sends=len(batch))
            for send in batch:
                _answer(send, Rejected("internal", INTERNAL))
        except BaseException:
            for send in batch:
                _answer(send, Rejected("internal", NOT_QUEUED))
            raise

    async def _rate_limit(self, batch: list[_Send]) -> list[_Send]:
        """The sends whose senders are within their limits, all counted in one round trip."""
        decisions = await self._limiter.hit_many([(s.command.user_id, str(uuid.uuid4())) for s in batch])
        admitted = []
        for send, decision in zip(batch, decisions, strict=True):
            if decision.allowed:
                admitted.append(send)
            else:
                _answer(send, rate_limited("too many messages", decision.retry_after_ms))
        return admitted

    async def _publish(self, sends: list[_Send]) -> None:
        self.flushes += 1
        try:
            if len(sends) == 1:
                # In its sender's context: its command.published line is the one it had before batching.
                publish = self._publisher.publish(self._queue, self._actor, sends[0].command)
                await asyncio.create_task(publish, context=sends[0].context)
            else:
                batch = SendChatBatch(command_id=f"batch:{uuid.uuid4()}", commands=[s.command for s in sends])
                await self._publisher.publish(self._queue, self._batch_actor, batch)
        except BrokerUnavailable:  # lost between the check and the publish: certainly not sent
            for send in sends:
                _answer(send, unavailable("RabbitMQ"))
            return
        except PublishUnconfirmed:
            for send in sends:
                _answer(send, _unconfirmed(send.command))
            return
        except PublishFailed:
            for send in sends:
                _answer(send, Rejected("internal", NOT_QUEUED))
            return
        except BaseException:  # cancelled mid-publish (shutdown): the message may have gone out
            for send in sends:
                _answer(send, _unconfirmed(send.command))
            raise
        for send in sends:
            _answer(send, None)


class PartitionedSends:
    """A :class:`SendFlusher` per chat partition, with one bound on the sends in flight on the node."""

    def __init__(self, publisher: Publisher, limiter: BatchRateLimiter, max_batch: int, *, max_in_flight: int) -> None:
        self._max_in_flight = max_in_flight
        self._flushers = {
            queue: SendFlusher(publisher, limiter, max_batch, max_in_flight=max_in_flight, queue=queue)
            for queue in CHAT_PARTITION_QUEUES
        }

    @property
    def in_flight(self) -> int:
        return sum(f.in_flight for f in self._flushers.values())

    @property
    def flushes(self) -> int:
        return sum(f.flushes for f in self._flushers.values())

    async def send(self, command: SendChatMessage) -> None:
        """As :meth:`SendFlusher.send`, through the flusher of the command's room."""
        flusher = self._flushers[chat_partition(command.room_id)]
        if self.in_flight >= self._max_in_flight:
            raise overloaded("too many messages in flight on this node", flusher.retry_after_ms())
        await flusher.send(command)

    async def drain(self) -> None:
        await asyncio.gather(*(f.drain() for f in self._flushers.values()))


def _unconfirmed(command: SendChatMessage) -> Rejected:
    return unconfirmed(command.client_message_id, command.message_id)


def _answer(send: _Send, rejection: Rejected | None) -> None:
    if send.answer.done():  # its sender went away (cancelled)
        return
    if rejection is None:
        send.answer.set_result(None)
    else:
        send.answer.set_exception(rejection)
