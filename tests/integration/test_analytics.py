"""Tenant analytics against the real PostgreSQL: rows written with SQL, exact aggregates read back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from domain.channels import conversation_room
from infra import analytics


async def _tenant(conn: asyncpg.Connection, tenant_id: str) -> None:
    await conn.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)", tenant_id, tenant_id)


async def _conversation(
    conn: asyncpg.Connection,
    tenant_id: str,
    channel: str,
    created: datetime,
    last: datetime,
    intent: str | None = None,
    confidence: float | None = None,
    lead: str | None = None,
) -> str:
    conversation_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO conversations (conversation_id, tenant_id, channel, address, contact, created_at,"
        " last_message_at, intent, confidence, lead, classified_at) VALUES ($1, $2, $3, 'addr', $4, $5, $6, $7, $8,"
        " $9, $10)",
        conversation_id,
        tenant_id,
        channel,
        f"+34{uuid.uuid4().int % 10**9:09d}",
        created,
        last,
        intent,
        confidence,
        lead,
        last if intent else None,
    )
    return conversation_room(tenant_id, str(conversation_id))


async def _message(conn: asyncpg.Connection, room_id: str, kind: str, at: datetime, reply_to: str | None = None) -> str:
    message_id = str(uuid.uuid4())
    payload = {"messageId": message_id, "roomId": room_id, "kind": kind, "timestamp": int(at.timestamp() * 1000)}
    if reply_to is not None:
        payload["replyTo"] = reply_to
    await conn.execute(
        "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
        " VALUES ($1, $2, $3, 1, $4, $5)",
        uuid.UUID(message_id),
        room_id,
        "agent" if kind == "ai" else "someone",
        payload,
        at,
    )
    # As a worker would: every stored message belongs to one applied command (a ledger invariant).
    await conn.execute(
        "INSERT INTO inbox (command_id, kind, status, result) VALUES ($1, 'test', 'applied', $2)",
        f"test:{message_id}",
        {"message_id": message_id},
    )
    return message_id


async def test_conversation_and_intent_analytics(pool: asyncpg.Pool):
    tid = f"an-{uuid.uuid4().hex[:8]}"
    other = f"{tid}_x"  # shares the prefix; "_" would be a LIKE wildcard
    now = datetime.now(UTC)
    since = now - timedelta(hours=1)
    base = now - timedelta(minutes=30)
    old = now - timedelta(days=2)
    ms = timedelta(milliseconds=1)
    async with pool.acquire() as conn:
        await _tenant(conn, tid)
        await _tenant(conn, other)
        # A: an old WhatsApp conversation, active again in the window.
        a = await _conversation(conn, tid, "twilio_whatsapp", old, base + 10_000 * ms, "pricing", 0.9, "hot")
        await _message(conn, a, "inbound", old)  # before the window
        trigger = await _message(conn, a, "inbound", base)
        await _message(conn, a, "ai", base + 1500 * ms, reply_to=trigger)
        await _message(conn, a, "outbound", base + 10_000 * ms)
        # B: a new Instagram conversation.
        b = await _conversation(conn, tid, "instagram", base + 60_000 * ms, base + 75_000 * ms, "pricing", 0.7, "warm")
        await _message(conn, b, "inbound", base + 60_000 * ms)
        trigger = await _message(conn, b, "inbound", base + 70_000 * ms)
        await _message(conn, b, "ai", base + 71_500 * ms, reply_to=trigger)
        await _message(conn, b, "ai", base + 75_000 * ms, reply_to="not-a-uuid")  # a reply, no response time
        # C: quiet since before the window; classified long ago.
        c = await _conversation(conn, tid, "twilio_whatsapp", old, old, "support", 0.5, "cold")
        await _message(conn, c, "inbound", old)
        # D: active, not classified yet.
        await _conversation(conn, tid, "twilio_sms", old, old)
        # Another tenant, busy in the window: none of it counts.
        o = await _conversation(conn, other, "twilio_whatsapp", base, base + 1500 * ms, "pricing", 0.1, "hot")
        trigger = await _message(conn, o, "inbound", base)
        await _message(conn, o, "ai", base + 1500 * ms, reply_to=trigger)
        await _message(conn, o, "outbound", base + 1500 * ms)

    stats = await analytics.conversation_stats(pool, tid, since)
    assert stats.conversations == 2
    assert stats.new_conversations == 1
    assert stats.messages == {"inbound": 3, "outbound": 1, "ai": 3}
    assert stats.per_channel == {
        "instagram": {"conversations": 1, "messages": 4},
        "twilio_whatsapp": {"conversations": 1, "messages": 3},
    }
    assert stats.replies == 3
    assert stats.avg_response_ms == 1500

    async with pool.acquire() as conn:  # a Connection works as well as a Pool
        everything = await analytics.conversation_stats(conn, tid, old - timedelta(seconds=1))
    assert everything.conversations == 3 and everything.new_conversations == 4
    assert everything.messages == {"inbound": 5, "outbound": 1, "ai": 3}
    assert everything.per_channel["twilio_whatsapp"] == {"conversations": 2, "messages": 5}

    quiet = await analytics.conversation_stats(pool, tid, now + timedelta(minutes=1))
    assert quiet.conversations == 0 and quiet.new_conversations == 0
    assert quiet.messages == {"inbound": 0, "outbound": 0, "ai": 0}
    assert quiet.per_channel == {} and quiet.replies == 0 and quiet.avg_response_ms is None

    intents = await analytics.intent_stats(pool, tid)
    assert intents.classified == 3
    assert intents.intents == [
        {"intent": "pricing", "count": 2, "avgConfidence": 0.8},
        {"intent": "support", "count": 1, "avgConfidence": 0.5},
    ]
    assert intents.leads == {"hot": 1, "warm": 1, "cold": 1}

    recent = await analytics.intent_stats(pool, tid, since)
    assert recent.classified == 2
    assert recent.intents == [{"intent": "pricing", "count": 2, "avgConfidence": 0.8}]
    assert recent.leads == {"hot": 1, "warm": 1, "cold": 0}

    assert await analytics.tenant_exists(pool, tid)
    assert not await analytics.tenant_exists(pool, f"{tid}-nope")
    nobody = await analytics.conversation_stats(pool, f"{tid}-nope", since)
    assert nobody.conversations == 0 and nobody.per_channel == {}
