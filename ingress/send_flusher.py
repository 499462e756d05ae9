"""Chat sends published in batches: one flusher per queue, one AMQP message and one confirm per flush.

A send that arrives while no flush is in flight is flushed at once (the flush starts on the next
turn of the event loop; there is no timer, so an idle node adds no latency). Sends that arrive
while a flush is in flight wait for the next one, which starts as soon as the previous one ends,
and takes at most ``max_batch`` of them (the rest wait for the one after). A flush:

1. rate-limits every sender of the batch in one Redis round trip (``RateLimiter.hit_many``); a
   refused sender gets the ``rate_limited`` rejection a single send gets and is left out;
2. publishes the others as one ``chat_send_batch`` message (``SendChatBatch``, id ``batch:<uuid>``)
   with a publisher confirm, and answers each of them from that one confirm; if it fails, each of
   them gets the ``internal`` rejection a single send gets (nothing was published, nothing charged).

A flush of one command publishes it as that command alone (``chat_send_message``), logged with its
sender's log context, exactly as before batching: an idle node sends what it always sent. A batch's
``command.published`` line carries the batch id and its ``command_ids`` (infra/publisher.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from infra.publisher import PublishFailed
from ingress.rate_limiter import RateDecision
from ingress.rejections import Rejected, rate_limited
from schemas import queues
from schemas.base import Command
from schemas.commands import SendChatBatch, SendChatMessage

log = structlog.get_logger(__name__)

NOT_QUEUED = "the message could not be queued; nothing was charged, retry"
INTERNAL = "internal error; nothing was charged"


class Publisher(Protocol):
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
        queue: str = queues.CHAT_QUEUE,
        actor: str = queues.SEND_MESSAGE_ACTOR,
        batch_actor: str = queues.SEND_BATCH_ACTOR,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._publisher = publisher
        self._limiter = limiter
        self._max_batch = max_batch
        self._queue = queue
        self._actor = actor
        self._batch_actor = batch_actor
        self._waiting: list[_Send] = []  # for the next flush, in arrival order
        self._task: asyncio.Task[None] | None = None  # the flushes, one after another, while sends wait
        self.flushes = 0  # publishes attempted (for tests and metrics)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def flushing(self) -> bool:
        return self._task is not None

    async def send(self, command: SendChatMessage) -> None:
        """Return once RabbitMQ has confirmed ``command`` (alone or in a batch); raise ``Rejected``
        (``rate_limited`` or ``internal``: not published, nothing charged) otherwise."""
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Send(command, answer, contextvars.copy_context()))
        if self._task is None:
            # A context of its own: a batch's lines must not carry the first sender's command_id.
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        await answer

    async def drain(self) -> None:
        """Wait until every send handed in so far is answered (before the publisher closes)."""
        while self._task is not None:
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                await self._flush(batch)
        finally:
            self._task = None
            for send in self._waiting:  # only if cancelled: nobody waits forever
                _answer(send, Rejected("internal", NOT_QUEUED))
            self._waiting = []

    async def _flush(self, batch: list[_Send]) -> None:
        try:
            admitted = await self._rate_limit(batch)
            if admitted:
                await self._publish(admitted)
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
        except PublishFailed:
            for send in sends:
                _answer(send, Rejected("internal", NOT_QUEUED))
            return
        for send in sends:
            _answer(send, None)


def _answer(send: _Send, rejection: Rejected | None) -> None:
    if send.answer.done():  # its sender went away (cancelled)
        return
    if rejection is None:
        send.answer.set_result(None)
    else:
        send.answer.set_exception(rejection)
