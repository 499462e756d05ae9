"""Handler of the ``outbound`` queue: deliver stored outbound messages through Twilio or Meta.

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

from dataclasses import dataclass

import structlog

from infra.settings import Settings
from schemas.commands import SendOutbound
from schemas.queues import SEND_OUTBOUND_ACTOR
from workers import outbound_service
from workers.effects import Outcome
from workers.emits import publish
from workers.handlers import Handlers
from workers.locks import SendLocks
from workers.providers import Providers
from workers.resources import Component, Resources

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class OutboundRuntime:
    """One provider client set and one lock connection per worker process, made on its event loop."""

    providers: Providers
    locks: SendLocks


def _open(settings: Settings) -> OutboundRuntime:
    return OutboundRuntime(Providers(settings), SendLocks(settings.database_url))


async def _close(runtime: OutboundRuntime) -> None:
    # Closes the HTTP session and the lock connection while the event loop still runs.
    await runtime.providers.close()
    await runtime.locks.close()


RUNTIME: Component[OutboundRuntime] = Component("outbound", make=_open, close=_close)

handlers = Handlers()


def _outcome(delivery: outbound_service.Outcome) -> Outcome:
    """What a delivery did, for the event log (workers/middleware/event_log.py): a provider's refusal is final
    (rejected); a message already settled, or being sent by another delivery, makes this one a
    no-op (duplicate). Its ``messageStatus`` emits go out either way."""
    match delivery.status:
        case "sent":
            return Outcome(True, "applied", delivery.emits)
        case "failed":
            return Outcome(True, "rejected", delivery.emits)
        case _:
            return Outcome(False, "applied", delivery.emits)


async def _send_failed(res: Resources, cmd: SendOutbound, exc: BaseException) -> None:
    rt = res.component(RUNTIME)
    outcome = await outbound_service.fail_unsent(res.pool, rt.locks, cmd.message_id, "internal", repr(exc))
    await publish(res.emitter, outcome.emits)


@handlers.on(SEND_OUTBOUND_ACTOR, on_give_up=_send_failed)
async def outbound_send(res: Resources, cmd: SendOutbound) -> Outcome:
    rt = res.component(RUNTIME)
    delivery = await outbound_service.deliver(
        res.pool, rt.locks, rt.providers.send, cmd.message_id, res.settings.outbound_max_attempts
    )
    log.info(
        "outbound.done",
        message_id=cmd.message_id,
        status=delivery.status,
        provider_message_id=delivery.provider_message_id,
        error_code=delivery.error_code,
    )
    return _outcome(delivery)
