"""A tenant's conversations for the live inbox, newest activity first, page by page.

Keyset pagination on ``(last_message_at, conversation_id)`` over the index of migration 0010,
so a page costs the same wherever it starts and a conversation that moves to the top while an
operator pages is neither skipped nor repeated within the older pages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.channels import conversation_room


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
