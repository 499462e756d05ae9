"""Room messages and read marks: the chat history every message-producing command writes, and
what sockets and the agent read of it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.db import Conn, ConnOrPool


@dataclass(frozen=True, slots=True)
class NewRow:
    message_id: str
    room_id: str
    user_id: str
    words: int
    payload: dict[str, Any]
    created_ms: int


async def store(
    conn: Conn,
    message_id: str,
    room_id: str,
    user_id: str,
    words: int,
    payload: dict[str, Any],
    created_ms: int,
) -> None:
    """Store one room message (its ``payload`` is what the room is sent; ids are uuids, as text)."""
    await store_many(conn, [NewRow(message_id, room_id, user_id, words, payload, created_ms)])


async def store_many(conn: Conn, rows: Sequence[NewRow]) -> None:
    """Store room messages, in the order given, each with the next sequence number of its room.

    The number is written into the row's ``payload`` as ``seq`` too (the same dict the caller
    emits), so what clients receive says where the message stands in its room. Rooms are numbered
    under their ``room_sequences`` row, taken in room order: two transactions storing messages of
    the same rooms cannot deadlock, and a room's numbers are handed out in commit order.
    """
    if not rows:
        return
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.room_id] = counts.get(row.room_id, 0) + 1
    rooms = sorted(counts)
    reserved = await conn.fetch(
        "INSERT INTO room_sequences (room_id, last_seq) SELECT * FROM unnest($1::text[], $2::bigint[])"
        " ON CONFLICT (room_id) DO UPDATE SET last_seq = room_sequences.last_seq + EXCLUDED.last_seq"
        " RETURNING room_id, last_seq",
        rooms,
        [counts[r] for r in rooms],
    )
    following = {r["room_id"]: r["last_seq"] - counts[r["room_id"]] for r in reserved}
    seqs = []
    for row in rows:
        following[row.room_id] += 1
        row.payload["seq"] = following[row.room_id]
        seqs.append(following[row.room_id])
    await conn.execute(
        "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at, room_seq)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::jsonb[], $6::timestamptz[],"
        " $7::bigint[])",
        [r.message_id for r in rows],
        [r.room_id for r in rows],
        [r.user_id for r in rows],
        [r.words for r in rows],
        [r.payload for r in rows],
        [datetime.fromtimestamp(r.created_ms / 1000, UTC) for r in rows],
        seqs,
    )


async def mark_read(conn: Conn, room_id: str, user_id: str, message_id: str) -> bool:
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


async def recent_payloads(
    conn: ConnOrPool, room_id: str, limit: int, *, before_seq: int | None = None
) -> list[dict[str, Any]]:
    """The payloads of the room's latest ``limit`` messages (before ``before_seq``), oldest first."""
    return (await page(conn, room_id, before_seq=before_seq, limit=limit, with_last_seq=False)).payloads


@dataclass(frozen=True, slots=True)
class Page:
    payloads: list[dict[str, Any]]  # oldest first
    has_more: bool  # more messages lie beyond the page, in the direction it was read
    last_seq: int  # the room's latest seq (0: no message yet)


async def page(
    conn: ConnOrPool,
    room_id: str,
    *,
    after_seq: int | None = None,
    before_seq: int | None = None,
    limit: int,
    with_last_seq: bool = True,
) -> Page:
    """Up to ``limit`` of the room's messages between the two bounds (both exclusive), oldest first.

    With ``after_seq``, the first ones after it (catching up, page by page forwards); otherwise the
    latest ones before ``before_seq`` (or the latest of all), paging backwards through history.
    """
    forwards = after_seq is not None
    rows = await conn.fetch(
        "SELECT room_seq, payload FROM messages WHERE room_id = $1"
        " AND ($2::bigint IS NULL OR room_seq > $2) AND ($3::bigint IS NULL OR room_seq < $3)"
        f" ORDER BY room_seq {'ASC' if forwards else 'DESC'} LIMIT $4",
        room_id,
        after_seq,
        before_seq,
        limit + 1,
    )
    has_more = len(rows) > limit
    rows = rows[:limit] if forwards else rows[:limit][::-1]
    last = await last_seq(conn, room_id) if with_last_seq else 0
    return Page([r["payload"] for r in rows], has_more, last)


async def last_seq(conn: ConnOrPool, room_id: str) -> int:
    """The room's latest message seq, 0 before its first message."""
    return await conn.fetchval("SELECT last_seq FROM room_sequences WHERE room_id = $1", room_id) or 0


async def recent_with_delivery(
    conn: ConnOrPool, room_id: str, limit: int, *, before_seq: int | None = None
) -> list[tuple[dict[str, Any], str | None]]:
    """The room's latest ``limit`` messages (before ``before_seq``), oldest first, each with the last
    known delivery status of its outbound copy (None for a message that was not sent out, e.g. the
    contact's own)."""
    rows = await conn.fetch(
        "SELECT recent.payload, o.status FROM (SELECT room_seq, message_id, payload FROM messages"
        " WHERE room_id = $1 AND ($3::bigint IS NULL OR room_seq < $3) ORDER BY room_seq DESC LIMIT $2) recent"
        " LEFT JOIN outbound_messages o ON o.message_id = recent.message_id ORDER BY recent.room_seq",
        room_id,
        limit,
        before_seq,
    )
    return [(r["payload"], r["status"]) for r in rows]


async def message_seq(conn: ConnOrPool, room_id: str, message_id: uuid.UUID) -> int | None:
    """The message's position in the room (its ``seq``); None when the room has no such message."""
    return await conn.fetchval("SELECT seq FROM messages WHERE message_id = $1 AND room_id = $2", message_id, room_id)


async def context(conn: ConnOrPool, room_id: str, trigger_message_id: str, limit: int) -> list[dict[str, Any]]:
    """The room's last ``limit`` messages up to and including the trigger, oldest first."""
    rows = await conn.fetch(
        "SELECT payload FROM (SELECT seq, payload FROM messages WHERE room_id = $1 AND seq <="
        " (SELECT seq FROM messages WHERE message_id = $2) ORDER BY seq DESC LIMIT $3) recent ORDER BY seq",
        room_id,
        uuid.UUID(trigger_message_id),
        limit,
    )
    return [r["payload"] for r in rows]
