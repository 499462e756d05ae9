"""Room messages and read marks: the chat history every message-producing command writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg


async def store(
    conn: asyncpg.Connection,
    message_id: str,
    room_id: str,
    user_id: str,
    words: int,
    payload: dict[str, Any],
    created_ms: int,
) -> None:
    """Store one room message (its ``payload`` is what the room was sent); ids are uuids, as text."""
    await conn.execute(
        "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        message_id,
        room_id,
        user_id,
        words,
        payload,
        datetime.fromtimestamp(created_ms / 1000, UTC),
    )


async def mark_read(conn: asyncpg.Connection, room_id: str, user_id: str, message_id: str) -> bool:
    """Move the user's read mark in the room to ``message_id``; False if the room has no such message."""
    return bool(
        await conn.fetchval(
            "INSERT INTO read_marks (room_id, user_id, message_id)"
            " SELECT room_id, $2, message_id FROM messages WHERE message_id = $3 AND room_id = $1"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET message_id = EXCLUDED.message_id, updated_at = now()"
            " RETURNING true",
            room_id,
            user_id,
            message_id,
        )
    )
