"""Actors of the ``outbound`` queue: deliver stored outbound messages through Twilio or Meta.

``outbound_send`` holds the message (one send in flight per message, across processes), claims it
in a short transaction (``sending``, ``attempts+1``), sends it with retries (429, 5xx, timeouts;
``OUTBOUND_MAX_ATTEMPTS`` requests at most, ``OUTBOUND_TIMEOUT_S`` each), records the provider id
and ``sent`` (or ``failed`` with the provider's code) in a second short transaction, and only then
publishes ``messageStatus`` to the conversation room (and, for a failure, to the tenant's channel).
No database connection is held while the provider is called. Steps: :mod:`workers.outbound_service`.

**Exactly once, and where it can break.** Once the provider id is committed, every later delivery
of the command (RabbitMQ redelivery, a replay, the same command published again) finds it and
sends nothing; so does a duplicate delivered while a live worker is sending (the per-message
lock, which a dead worker's connection releases at once). A second message can reach the contact
only through the window that opens when the request leaves for the provider (it may act on it as
soon as it arrives) and closes when our transaction recording the provider id commits:

- the worker dies (kill -9, OOM, power loss) inside the window, whether the provider's answer
  had arrived or not: the row stays ``sending`` with no provider id, the lock dies with the
  process's connection, RabbitMQ redelivers the unacked command, and it sends again. The contact
  gets the message twice; the row records the second send's id (the first was never recorded,
  so its delivery callbacks match no row);
- the commit fails for longer than ``RECORD_RETRY_S`` (10 s of database outage): dramatiq
  retries the command and it sends again, with the same result;
- an attempt that timed out or lost its connection after the provider received it is retried
  (an ambiguous outcome no provider lets us resolve: neither Twilio nor the Graph API takes an
  idempotency key for sends). A 429 or 5xx answer is not ambiguous: nothing was accepted.

The part of the window that is ours is kept minimal: between the provider's answer and the
commit nothing else is awaited (only, when all are busy, the wait for a pooled connection), and
no other work is done. The rest of it is the provider's reply time, which we cannot shorten. A
crash outside the window is harmless: before the request, the redelivery sends for the first
time; after the commit, it finds the provider id and sends nothing. A crash between the commit and
the publish loses only the ``messageStatus`` event, which the redelivered command publishes again
from the stored status. A message claimed ``OUTBOUND_MAX_ATTEMPTS`` times without an outcome (a
crash loop) is marked ``failed`` (``unconfirmed``) instead of being sent again, which bounds the
duplicates a crash loop can cause.

**Concurrency.** A dramatiq worker thread waits for its actor's coroutine, so sends in flight per
process = ``--threads`` (run this queue with many: ``--queues outbound --processes 1 --threads
128``). Everything below is shared per process and sized not to serialize them: one aiohttp
connection pool (limit 1024) for every provider, the worker's asyncpg pool (held only for the two
short transactions), and one connection for the per-message advisory locks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import dramatiq
import pydantic
import structlog

from infra.settings import Settings
from schemas.commands import SendOutbound
from schemas.queues import OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from workers import outbound_service
from workers.broker import resources, settings, shutdown
from workers.emits import publish
from workers.fail_closed import on_failure
from workers.locks import SendLocks
from workers.outbound_service import InvalidCommand
from workers.providers import Providers
from workers.resources import Resources

log = structlog.get_logger(__name__)

# Retries here are dramatiq's, for a whole delivery: a missing row (committed after all, a moment
# later), a database or Redis fault. Provider retries happen inside the send (tenacity).
RETRY_POLICY: dict[str, Any] = {
    "max_retries": 5,
    "min_backoff": 500,
    "max_backoff": 10_000,
    "throws": (pydantic.ValidationError, InvalidCommand),
}


@dataclass(slots=True)
class OutboundRuntime:
    providers: Providers
    locks: SendLocks


class OutboundRuntimeHolder:
    """One provider client set and one lock connection per worker process, made on its event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime: OutboundRuntime | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> OutboundRuntime:
        if self._runtime is not None:
            return self._runtime
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runtime is None:
                self._runtime = OutboundRuntime(Providers(self._settings), SendLocks(self._settings.database_url))
        return self._runtime

    async def close(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.providers.close()
            await runtime.locks.close()


runtime = OutboundRuntimeHolder(settings)

# What a delivery did, for the event log (workers/event_log.py): a provider's refusal is final (rejected);
# a message already settled, or being sent by another delivery, makes this one a no-op (duplicate).
LOG_STATUS: dict[str, str] = {"sent": "applied", "failed": "rejected", "duplicate": "duplicate", "busy": "duplicate"}


@dramatiq.actor(queue_name=OUTBOUND_QUEUE, actor_name=SEND_OUTBOUND_ACTOR, **RETRY_POLICY)
async def outbound_send(command: dict[str, Any]) -> str:
    cmd = SendOutbound.model_validate(command)
    res = await resources.get()
    rt = await runtime.get()
    outcome = await outbound_service.deliver(
        res.pool, rt.locks, rt.providers.send, cmd.message_id, res.settings.outbound_max_attempts
    )
    await publish(res.emitter, outcome.emits)
    log.info(
        "outbound.done",
        message_id=cmd.message_id,
        status=outcome.status,
        provider_message_id=outcome.provider_message_id,
        error_code=outcome.error_code,
    )
    return LOG_STATUS[outcome.status]


@on_failure(SEND_OUTBOUND_ACTOR)
async def _send_failed(res: Resources, command: dict[str, Any], exc: BaseException) -> None:
    cmd = SendOutbound.model_validate(command)
    rt = await runtime.get()
    outcome = await outbound_service.fail_unsent(res.pool, rt.locks, cmd.message_id, "internal", repr(exc))
    await publish(res.emitter, outcome.emits)


# Closes the HTTP session and the lock connection while the event loop still runs.
shutdown.register(runtime.close)
