"""Outbound channel messages (``outbound_messages``) as the outbound worker claims, sends and
settles them (:mod:`workers.outbound_service` decides; this module stores). They are queued, and
their delivery reports recorded, by :mod:`infra.conversations`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from domain.channels import conversation_room
from infra.db import Conn, ConnOrPool
from schemas.channels import room_channel

_COLUMNS = (
    "message_id, conversation_id, tenant_id, channel, address, contact, body, status,"
    " provider_message_id, error_code, error_message, attempts"
)


@dataclass(frozen=True, slots=True)
class OutboundRow:
    message_id: str
    conversation_id: str
    tenant_id: str
    channel: str
    address: str
    contact: str
    body: str
    status: str
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    attempts: int

    @classmethod
    def of(cls, record: asyncpg.Record) -> OutboundRow:
        values = dict(record)
        values["message_id"] = str(values["message_id"])
        values["conversation_id"] = str(values["conversation_id"])
        return cls(**values)

    @property
    def room(self) -> str:
        return room_channel(conversation_room(self.tenant_id, self.conversation_id))


async def lock(conn: Conn, message_id: uuid.UUID) -> OutboundRow | None:
    """The message, locked until the transaction ends (None: no such message)."""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM outbound_messages WHERE message_id = $1 FOR UPDATE", message_id
    )
    return OutboundRow.of(record) if record is not None else None


async def mark_sending(conn: Conn, message_id: uuid.UUID) -> OutboundRow:
    """One more claim: ``sending``, ``attempts + 1``."""
    record = await conn.fetchrow(
        f"UPDATE outbound_messages SET status = 'sending', attempts = attempts + 1, updated_at = now()"
        f" WHERE message_id = $1 RETURNING {_COLUMNS}",
        message_id,
    )
    assert record is not None, f"no outbound message {message_id}"
    return OutboundRow.of(record)


async def mark_unconfirmed(conn: Conn, message_id: uuid.UUID, error_message: str) -> OutboundRow:
    """``failed`` (``unconfirmed``): claimed too often without the provider's answer being recorded."""
    record = await conn.fetchrow(
        f"UPDATE outbound_messages SET status = 'failed', error_code = 'unconfirmed', error_message = $2,"
        f" updated_at = now() WHERE message_id = $1 RETURNING {_COLUMNS}",
        message_id,
        error_message,
    )
    assert record is not None, f"no outbound message {message_id}"
    return OutboundRow.of(record)


async def store_provider_id(conn: Conn, message_id: uuid.UUID, provider_message_id: str, status: str) -> None:
    """The provider accepted the message: its id, and ``status``; any earlier error is cleared."""
    await conn.execute(
        "UPDATE outbound_messages SET provider_message_id = $2, status = $3, error_code = NULL,"
        " error_message = NULL, updated_at = now() WHERE message_id = $1",
        message_id,
        provider_message_id,
        status,
    )


async def mark_failed(conn: ConnOrPool, message_id: uuid.UUID, code: str, message: str) -> OutboundRow | None:
    """``failed`` with ``code``, unless the message was sent or settled meanwhile (then None)."""
    record = await conn.fetchrow(
        f"UPDATE outbound_messages SET status = 'failed', error_code = $2, error_message = $3, updated_at = now()"
        f" WHERE message_id = $1 AND provider_message_id IS NULL AND status IN ('queued', 'sending')"
        f" RETURNING {_COLUMNS}",
        message_id,
        code[:100],
        message[:1000],
    )
    return OutboundRow.of(record) if record is not None else None
