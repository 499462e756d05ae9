"""What a socket reads of a room: its latest messages on join, and a message's place for a read mark.

The messages themselves are written by the workers (``infra.messages``); these are reads only.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def recent_payloads(conn: asyncpg.Connection | asyncpg.Pool, room_id: str, limit: int) -> list[dict[str, Any]]:
    """The payloads of the room's latest ``limit`` messages, oldest first."""
    rows = await conn.fetch(
        "SELECT payload FROM (SELECT seq, payload FROM messages WHERE room_id = $1"
        " ORDER BY seq DESC LIMIT $2) recent ORDER BY seq",
        room_id,
        limit,
    )
    return [r["payload"] for r in rows]


async def recent_with_delivery(
    conn: asyncpg.Connection | asyncpg.Pool, room_id: str, limit: int
) -> list[tuple[dict[str, Any], str | None]]:
    """The room's latest ``limit`` messages, oldest first, each with the last known delivery status of
    its outbound copy (None for a message that was not sent out, e.g. the contact's own)."""
    rows = await conn.fetch(
        "SELECT recent.payload, o.status FROM (SELECT seq, message_id, payload FROM messages"
        " WHERE room_id = $1 ORDER BY seq DESC LIMIT $2) recent"
        " LEFT JOIN outbound_messages o ON o.message_id = recent.message_id ORDER BY recent.seq",
        room_id,
        limit,
    )
    return [(r["payload"], r["status"]) for r in rows]


async def message_seq(conn: asyncpg.Connection | asyncpg.Pool, room_id: str, message_id: uuid.UUID) -> int | None:
    """The message's position in the room (its ``seq``); None when the room has no such message."""
    return await conn.fetchval("SELECT seq FROM messages WHERE message_id = $1 AND room_id = $2", message_id, room_id)
