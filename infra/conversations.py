"""A tenant's conversations with its contacts: the rows channel commands write (a contact's
inbound message opens or touches one, an operator takes one over or hands it back), the
outbound messages queued on them and their delivery status, and the live inbox's list.

The inbox list is paged by keyset on ``(last_message_at, conversation_id)`` over the index of
migration 0010, so a page costs the same wherever it starts and a conversation that moves to the
top while an operator pages is neither skipped nor repeated within the older pages.

Rows come back as plain dicts of the columns the statement returns: the ``conversationUpdated``
event (``workers.channel_service.conversation_updated``) announces the fields a row has.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from domain.channels import conversation_room
from infra.db import Conn


class Reader(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


Position = tuple[datetime, uuid.UUID]

# $1 tenant, $2/$3 the position after which to start (NULL: the newest), $4 rows.
_PAGE_SQL = """
SELECT c.conversation_id, c.channel, c.contact, c.contact_name, c.last_message_at, c.intent, c.confidence,
       c.lead, c.summary, c.taken_over_by, c.taken_over_name, c.taken_over_at,
       last.payload->>'message' AS last_message, last.payload->>'kind' AS last_kind,
       o.status AS last_status
FROM conversations c
LEFT JOIN LATERAL (
    SELECT m.message_id, m.payload FROM messages m
    WHERE m.room_id = 'conv:' || c.tenant_id || ':' || c.conversation_id::text
    ORDER BY m.seq DESC LIMIT 1
) last ON true
LEFT JOIN outbound_messages o ON o.message_id = last.message_id
WHERE c.tenant_id = $1
  AND ($2::timestamptz IS NULL OR (c.last_message_at, c.conversation_id) < ($2::timestamptz, $3::uuid))
ORDER BY c.last_message_at DESC, c.conversation_id DESC
LIMIT $4
"""


def _ms(at: datetime | None) -> int | None:
    return int(at.timestamp() * 1000) if at is not None else None


@dataclass(frozen=True, slots=True)
class Page:
    conversations: list[dict[str, Any]]
    next_position: Position | None  # where the next page starts; None on the last page


def _as_json(tenant_id: str, row: Any) -> dict[str, Any]:
    conversation_id = str(row["conversation_id"])
    return {
        "conversationId": conversation_id,
        "roomId": conversation_room(tenant_id, conversation_id),
        "channel": row["channel"],
        "contact": row["contact"],
        "contactName": row["contact_name"],
        "lastMessage": row["last_message"][:200] if row["last_message"] else None,
        "lastMessageKind": row["last_kind"],
        "lastMessageStatus": row["last_status"],
        "lastMessageAt": _ms(row["last_message_at"]),
        "intent": row["intent"],
        "confidence": row["confidence"],
        "lead": row["lead"],
        "summary": row["summary"],
        "takenOverBy": row["taken_over_by"],
        "takenOverByName": row["taken_over_name"],
        "takenOverAt": _ms(row["taken_over_at"]),
    }


async def page(db: Reader, tenant_id: str, after: Position | None, limit: int) -> Page:
    """Up to ``limit`` conversations of ``tenant_id`` after ``after``, most recent activity first."""
    at, conversation_id = after if after is not None else (None, None)
    rows = await db.fetch(_PAGE_SQL, tenant_id, at, conversation_id, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return Page(
        [_as_json(tenant_id, row) for row in rows],
        (last["last_message_at"], last["conversation_id"]) if last is not None else None,
    )


# --- Conversations written by channel commands ---

Row = dict[str, Any]

_HOLDER = "taken_over_by, taken_over_name, taken_over_at"
# What a takeover reads and announces: the whole conversation, with its classification.
_STATE = (
    "conversation_id, tenant_id, channel, contact, contact_name, last_message_at, intent, confidence, lead,"
    f" summary, {_HOLDER}"
)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _row(record: asyncpg.Record | None) -> Row | None:
    return dict(record) if record is not None else None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def record_inbound(
    conn: Conn,
    tenant_id: str,
    channel: str,
    address: str,
    contact: str,
    contact_name: str | None,
    at_ms: int,
) -> Row:
    """The contact's conversation with the tenant on ``channel``, opened on its first message; its
    contact name and last activity brought up to date. Returns who holds it (``taken_over_*``)."""
    record = await conn.fetchrow(
        "INSERT INTO conversations (conversation_id, tenant_id, channel, address, contact, contact_name,"
        " last_message_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (tenant_id, channel, contact) DO UPDATE SET"
        " contact_name = coalesce(EXCLUDED.contact_name, conversations.contact_name),"
        " last_message_at = greatest(conversations.last_message_at, EXCLUDED.last_message_at)"
        f" RETURNING conversation_id, tenant_id, channel, contact, contact_name, {_HOLDER}",
        uuid.uuid4(),
        tenant_id,
        channel,
        address,
        contact,
        contact_name,
        _at(at_ms),
    )
    assert record is not None  # the upsert returns its row
    return dict(record)


async def to_reply(conn: Conn, conversation_id: str, tenant_id: str) -> Row | None:
    """The tenant's conversation an operator replies in (with the contact's address), if it exists."""
    return _row(
        await conn.fetchrow(
            "SELECT conversation_id, tenant_id, channel, address, contact, contact_name,"
            f" {_HOLDER} FROM conversations WHERE conversation_id = $1 AND tenant_id = $2",
            uuid.UUID(conversation_id),
            tenant_id,
        )
    )


async def touch(conn: Conn, conversation_id: uuid.UUID, at_ms: int) -> None:
    """Move the conversation's last activity forward to ``at_ms`` (never back)."""
    await conn.execute(
        "UPDATE conversations SET last_message_at = greatest(last_message_at, $2) WHERE conversation_id = $1",
        conversation_id,
        _at(at_ms),
    )


async def lock_state(conn: Conn, conversation_id: str, tenant_id: str) -> Row | None:
    """The tenant's conversation, locked until the transaction ends; None if there is none (or the
    id is not a uuid)."""
    if (key := _uuid(conversation_id)) is None:
        return None
    return _row(
        await conn.fetchrow(
            f"SELECT {_STATE} FROM conversations WHERE conversation_id = $1 AND tenant_id = $2 FOR UPDATE",
            key,
            tenant_id,
        )
    )


async def take_over(conn: Conn, conversation_id: uuid.UUID, operator_id: str, name: str | None) -> Row:
    """The operator holds the conversation from now on; its new state."""
    record = await conn.fetchrow(
        "UPDATE conversations SET taken_over_by = $2, taken_over_name = $3, taken_over_at = now()"
        f" WHERE conversation_id = $1 RETURNING {_STATE}",
        conversation_id,
        operator_id,
        name,
    )
    assert record is not None, f"no conversation {conversation_id}"
    return dict(record)


async def hand_back(conn: Conn, conversation_id: uuid.UUID) -> Row:
    """Nobody holds the conversation any more (the AI agent answers again); its new state."""
    record = await conn.fetchrow(
        "UPDATE conversations SET taken_over_by = NULL, taken_over_name = NULL, taken_over_at = NULL"
        f" WHERE conversation_id = $1 RETURNING {_STATE}",
        conversation_id,
    )
    assert record is not None, f"no conversation {conversation_id}"
    return dict(record)


# --- Outbound messages: what is sent to the contact, and how far its delivery got ---


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbound message a provider's delivery report is about."""

    message_id: uuid.UUID
    tenant_id: str
    conversation_id: uuid.UUID
    status: str


async def queue_outbound(conn: Conn, message_id: str, conversation: Row, body: str) -> None:
    """Queue ``body`` for sending to the conversation's contact (status ``queued``)."""
    await conn.execute(
        "INSERT INTO outbound_messages (message_id, conversation_id, tenant_id, channel, address, contact, body)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        uuid.UUID(message_id),
        conversation["conversation_id"],
        conversation["tenant_id"],
        conversation["channel"],
        conversation["address"],
        conversation["contact"],
        body,
    )


async def lock_delivery(conn: Conn, provider_message_id: str) -> Delivery | None:
    """The outbound message the provider knows as ``provider_message_id``, locked; None if its
    send is not recorded (yet)."""
    record = await conn.fetchrow(
        "SELECT message_id, tenant_id, conversation_id, status FROM outbound_messages"
        " WHERE provider_message_id = $1 FOR UPDATE",
        provider_message_id,
    )
    if record is None:
        return None
    return Delivery(record["message_id"], record["tenant_id"], record["conversation_id"], record["status"])


async def set_delivery_status(
    conn: Conn, message_id: uuid.UUID, status: str, error_code: str | None, error_message: str | None
) -> None:
    """Record a delivery status; an error code or message is kept until a new one replaces it."""
    await conn.execute(
        "UPDATE outbound_messages SET status = $2, error_code = coalesce($3, error_code),"
        " error_message = coalesce($4, error_message), updated_at = now() WHERE message_id = $1",
        message_id,
        status,
        error_code,
        error_message,
    )


# --- Read and written by the AI agent (workers.ai_service) ---


async def is_taken_over(conn: Conn, conversation_id: str, *, lock: bool = False) -> bool:
    """Whether an operator holds the conversation; ``lock``: row-locked, which orders the check
    against a takeover."""
    lock_clause = " FOR UPDATE" if lock else ""
    return bool(
        await conn.fetchval(
            f"SELECT taken_over_by IS NOT NULL FROM conversations WHERE conversation_id = $1{lock_clause}",
            uuid.UUID(conversation_id),
        )
    )


async def touch_now(conn: Conn, conversation_id: str) -> Row | None:
    """Move the conversation's last activity forward to now (never back); the whole row."""
    return _row(
        await conn.fetchrow(
            "UPDATE conversations SET last_message_at = greatest(last_message_at, now())"
            " WHERE conversation_id = $1 RETURNING *",
            uuid.UUID(conversation_id),
        )
    )


async def classify(
    conn: Conn,
    conversation_id: str,
    tenant_id: str,
    intent: str,
    confidence: float,
    lead: str,
    summary: str,
) -> Row | None:
    """Store the agent's classification of the tenant's conversation; the whole row (None: no such one)."""
    return _row(
        await conn.fetchrow(
            "UPDATE conversations SET intent = $3, confidence = $4, lead = $5, summary = $6, classified_at = now()"
            " WHERE conversation_id = $1 AND tenant_id = $2 RETURNING *",
            uuid.UUID(conversation_id),
            tenant_id,
            intent,
            confidence,
            lead,
            summary,
        )
    )
