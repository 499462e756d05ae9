"""Outbound delivery, step by step: hold, claim, send, record. The DB steps are short transactions.

1. **Hold** the message (:class:`SendLocks`): at most one send of a message is in flight at a
   time, across every worker process. A delivery that finds it held does nothing: the holder's
   own command is unacked, so it finishes the job, or RabbitMQ redelivers it if the holder dies.
2. **Claim** (one transaction, ``SELECT … FOR UPDATE``): a message with a provider id or a final
   status is settled, and nothing is sent; otherwise ``status='sending'``, ``attempts+1``.
3. **Send** through the provider (no database connection held meanwhile).
4. **Record** (one transaction) the provider id and ``sent``, or ``failed`` with the provider's
   error code, then return the ``messageStatus`` emits for the caller to publish.

See :mod:`workers.outbound` for what a crash between 3 and 4 can do.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg
import structlog

from domain.channels import Channel, DeliveryStatus, conversation_room
from domain.errors import PermanentFailure
from infra import outbound_messages
from infra.outbound_messages import OutboundRow
from schemas.channel_events import MessageStatus
from schemas.channels import tenant_channel
from workers.db_retry import retry_transient
from workers.emits import Emit, emit
from workers.locks import SendLocks
from workers.providers import OutboundMessage, ProviderError

log = structlog.get_logger(__name__)

SETTLED = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.FAILED})

# Database faults worth retrying while recording a provider's answer: the send already happened,
# so giving up here means the command is redelivered and the message is sent again.
_TRANSIENT_DB = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)
RECORD_RETRY_S = 10.0


class OutboundMissing(Exception):
    """No such outbound row. Rows commit before their command is published: a race or a bug."""


class InvalidCommand(PermanentFailure):
    """A command that can never succeed (its message id is not a uuid)."""


def provider_message(row: OutboundRow) -> OutboundMessage:
    return OutboundMessage(Channel(row.channel), row.address, row.contact, row.body)


@dataclass(frozen=True, slots=True)
class Outcome:
    """``duplicate``: already settled, nothing sent; ``busy``: in flight elsewhere, nothing done."""

    status: Literal["sent", "failed", "duplicate", "busy"]
    emits: list[Emit]
    provider_message_id: str | None = None
    error_code: str | None = None


def message_uuid(message_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(message_id)
    except (ValueError, TypeError):
        raise InvalidCommand(f"message_id {message_id!r} is not a uuid") from None


# --- emits -------------------------------------------------------------------------------------


def status_emits(
    row: OutboundRow, status: str, error_code: str | None = None, error_message: str | None = None
) -> list[Emit]:
    """``messageStatus`` to the conversation room; a failure also goes to every operator of the tenant."""
    failed = status == DeliveryStatus.FAILED
    data = MessageStatus(
        messageId=row.message_id,
        roomId=conversation_room(row.tenant_id, row.conversation_id),
        status=status,
        errorCode=error_code if failed else None,
        errorMessage=error_message if failed else None,
    ).model_dump(mode="json")  # the shape workers.channel_service emits for delivery reports
    emits = [emit("messageStatus", row.room, data)]
    if failed:
        emits.append(emit("messageStatus", tenant_channel(row.tenant_id), data))
    return emits


# --- the DB steps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    action: Literal["send", "settled", "exhausted"]
    row: OutboundRow


async def claim(pool: asyncpg.Pool, message_id: uuid.UUID, max_claims: int) -> Claim:
    """Step 2: decide, under the row lock, whether this delivery sends; mark it ``sending`` if so.

    A message already claimed ``max_claims`` times without an outcome recorded (each time a
    worker died or failed mid-send) is failed instead of sent again: that bounds how often a
    crash loop can resend one message.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await outbound_messages.lock(conn, message_id)
        if row is None:
            raise OutboundMissing(f"no outbound message {message_id}")
        if row.provider_message_id is not None or row.status in SETTLED:
            return Claim("settled", row)
        if row.status == DeliveryStatus.SENDING and row.attempts >= max_claims:
            why = f"claimed {row.attempts} times without the provider's answer being recorded; not sent again"
            return Claim("exhausted", await outbound_messages.mark_unconfirmed(conn, message_id, why))
        return Claim("send", await outbound_messages.mark_sending(conn, message_id))


async def record_sent(pool: asyncpg.Pool, message_id: uuid.UUID, provider_message_id: str) -> bool:
    """Step 4 on success: store the provider id; ``sending`` becomes ``sent``. True if it did.

    Idempotent, so a commit whose answer was lost can be retried.
    """
    async with pool.acquire() as conn, conn.transaction():
        current = await outbound_messages.lock(conn, message_id)
        if current is None:
            raise OutboundMissing(f"outbound message {message_id} vanished while it was being sent")
        if current.provider_message_id is not None:
            if current.provider_message_id != provider_message_id:
                log.error(
                    "outbound.sent_twice",
                    message_id=str(message_id),
                    recorded=current.provider_message_id,
                    also=provider_message_id,
                )
            return False
        status = DeliveryStatus.SENT if current.status == DeliveryStatus.SENDING else current.status
        await outbound_messages.store_provider_id(conn, message_id, provider_message_id, status)
        return status == DeliveryStatus.SENT


async def record_failed(pool: asyncpg.Pool, message_id: uuid.UUID, code: str, message: str) -> OutboundRow | None:
    """Step 4 on failure: ``failed`` with the provider's code, unless it was sent or settled meanwhile."""
    return await outbound_messages.mark_failed(pool, message_id, code, message)


# --- the whole delivery ------------------------------------------------------------------------

Send = Callable[[OutboundMessage], Awaitable[str]]


async def deliver(pool: asyncpg.Pool, locks: SendLocks, send: Send, message_id: str, max_claims: int) -> Outcome:
    """Deliver one outbound message at most once per claim; see the module docstring."""
    key = message_uuid(message_id)
    async with locks.hold(key) as held:
        if not held:
            log.info("outbound.in_flight_elsewhere", message_id=message_id)
            return Outcome("busy", [])
        decided = await claim(pool, key, max_claims)
        row = decided.row
        if decided.action == "settled":
            return Outcome(
                "duplicate",
                status_emits(row, row.status, row.error_code, row.error_message),
                row.provider_message_id,
                row.error_code,
            )
        if decided.action == "exhausted":
            log.error("outbound.unconfirmed", message_id=message_id, attempts=row.attempts)
            return Outcome(
                "failed", status_emits(row, row.status, row.error_code, row.error_message), None, row.error_code
            )

        try:
            provider_message_id = await send(provider_message(row))
        except ProviderError as exc:
            return await _failed(pool, key, row, exc.code, exc.message)
        except Exception as exc:  # a bug in an adapter: fail closed rather than risk sending again
            log.exception("outbound.send_crashed", message_id=message_id)
            return await _failed(pool, key, row, "internal", repr(exc))
        # The window: from the provider's answer to this commit, nothing else is awaited.
        changed = await retry_transient(
            lambda: record_sent(pool, key, provider_message_id), within_s=RECORD_RETRY_S, errors=_TRANSIENT_DB
        )
        emits = status_emits(row, DeliveryStatus.SENT) if changed else []
        return Outcome("sent", emits, provider_message_id)


async def _failed(pool: asyncpg.Pool, key: uuid.UUID, row: OutboundRow, code: str, message: str) -> Outcome:
    failed = await retry_transient(
        lambda: record_failed(pool, key, code, message), within_s=RECORD_RETRY_S, errors=_TRANSIENT_DB
    )
    log.warning("outbound.failed", message_id=row.message_id, channel=row.channel, error_code=code, error=message)
    if failed is None:
        return Outcome("failed", [], None, code)
    return Outcome("failed", status_emits(failed, failed.status, failed.error_code, failed.error_message), None, code)


async def fail_unsent(pool: asyncpg.Pool, locks: SendLocks, message_id: str, code: str, message: str) -> Outcome:
    """Mark a message failed after its command gave up, unless it was sent or is in flight elsewhere."""
    key = message_uuid(message_id)
    async with locks.hold(key) as held:
        if not held:
            return Outcome("busy", [])
        failed = await record_failed(pool, key, code, message)
        if failed is None:
            return Outcome("duplicate", [])
        return Outcome(
            "failed", status_emits(failed, failed.status, failed.error_code, failed.error_message), None, code
        )
