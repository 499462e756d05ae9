"""Read-only analytics over a tenant's conversations, messages and AI classifications.

Every function takes anything with ``fetchrow``/``fetchval`` (an ``asyncpg.Pool`` or a
``Connection``), so a read-replica pool can be passed in place of the primary's. Everything is
aggregated in PostgreSQL: one round trip per report, a handful of rows back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

# A conversation with a message since ``since`` has ``last_message_at >= since`` (every writer
# moves it forward with ``greatest``), but writers stamp the two columns from slightly different
# clocks (the worker's and the database's ``now()``). Candidate conversations are taken from the
# ``conversations(tenant_id, last_message_at)`` index with this much slack; the exact cut is then
# made on ``messages.created_at``.
CLOCK_SLACK = timedelta(minutes=15)

LEADS = ("hot", "warm", "cold")
MESSAGE_KINDS = ("inbound", "outbound", "ai")


class Reader(Protocol):
    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


async def tenant_exists(db: Reader, tenant_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)", tenant_id))


_UUID_RE = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

# $1 tenant, $2 since, $3 slack. The tenant's conversation rooms are named
# conv:<tenant>:<conversation uuid>; joining on the exact room name uses messages(room_id, seq)
# and can never pick up another tenant's rooms (no LIKE, so no wildcard escaping either).
_CONVERSATIONS_SQL = f"""
WITH conv AS (
    SELECT conversation_id, channel, 'conv:' || tenant_id || ':' || conversation_id::text AS room_id
    FROM conversations
    WHERE tenant_id = $1 AND last_message_at >= $2::timestamptz - $3::interval
), msg AS MATERIALIZED (
    SELECT c.conversation_id, c.channel, m.room_id, m.created_at, m.payload->>'kind' AS kind,
           CASE WHEN m.payload->>'kind' = 'ai' AND m.payload->>'replyTo' ~ '{_UUID_RE}'
                THEN (m.payload->>'replyTo')::uuid END AS reply_to
    FROM conv c JOIN messages m ON m.room_id = c.room_id
    WHERE m.created_at >= $2
), per_channel AS (
    SELECT channel, count(DISTINCT conversation_id) AS conversations, count(*) AS messages
    FROM msg GROUP BY channel
), agent AS (
    SELECT count(*) AS replies,
           round(avg(extract(epoch FROM msg.created_at - t.created_at) * 1000))::bigint AS avg_response_ms
    FROM msg LEFT JOIN messages t ON t.message_id = msg.reply_to AND t.room_id = msg.room_id
    WHERE msg.kind = 'ai'
)
SELECT
    (SELECT count(DISTINCT conversation_id) FROM msg) AS conversations,
    (SELECT count(*) FROM conversations WHERE tenant_id = $1 AND created_at >= $2) AS new_conversations,
    (SELECT count(*) FROM msg WHERE kind = 'inbound') AS inbound,
    (SELECT count(*) FROM msg WHERE kind = 'outbound') AS outbound,
    (SELECT count(*) FROM msg WHERE kind = 'ai') AS ai,
    (SELECT coalesce(json_object_agg(channel, json_build_object(
        'conversations', conversations, 'messages', messages) ORDER BY channel), '{{}}')::text
     FROM per_channel) AS per_channel,
    agent.replies,
    agent.avg_response_ms
FROM agent
"""


@dataclass(frozen=True, slots=True)
class ConversationStats:
    conversations: int
    new_conversations: int
    messages: dict[str, int]
    per_channel: dict[str, dict[str, int]]
    replies: int
    avg_response_ms: int | None


async def conversation_stats(db: Reader, tenant_id: str, since: datetime) -> ConversationStats:
    """Activity in a tenant's conversations from ``since`` on (``since`` must be timezone-aware)."""
    row = await db.fetchrow(_CONVERSATIONS_SQL, tenant_id, since, CLOCK_SLACK)
    return ConversationStats(
        conversations=row["conversations"],
        new_conversations=row["new_conversations"],
        messages={kind: row[kind] for kind in MESSAGE_KINDS},
        per_channel=json.loads(row["per_channel"]),
        replies=row["replies"],
        avg_response_ms=row["avg_response_ms"],
    )


# $1 tenant, $2 since (NULL for all time). Each conversation row holds its latest classification.
_INTENTS_SQL = """
WITH classified AS MATERIALIZED (
    SELECT intent, confidence, lead
    FROM conversations
    WHERE tenant_id = $1 AND classified_at IS NOT NULL
      AND ($2::timestamptz IS NULL OR last_message_at >= $2::timestamptz)
), by_intent AS (
    SELECT intent, count(*) AS n, round(avg(confidence)::numeric, 4)::float8 AS avg_confidence
    FROM classified WHERE intent IS NOT NULL GROUP BY intent
)
SELECT
    (SELECT count(*) FROM classified) AS classified,
    (SELECT coalesce(json_agg(json_build_object('intent', intent, 'count', n, 'avgConfidence', avg_confidence)
                              ORDER BY n DESC, intent), '[]')::text FROM by_intent) AS intents,
    (SELECT count(*) FROM classified WHERE lead = 'hot') AS hot,
    (SELECT count(*) FROM classified WHERE lead = 'warm') AS warm,
    (SELECT count(*) FROM classified WHERE lead = 'cold') AS cold
"""


@dataclass(frozen=True, slots=True)
class IntentStats:
    classified: int
    intents: list[dict[str, Any]]
    leads: dict[str, int]


async def intent_stats(db: Reader, tenant_id: str, since: datetime | None = None) -> IntentStats:
    """The distribution of the latest classification of a tenant's conversations, optionally only
    over conversations with a message from ``since`` on."""
    row = await db.fetchrow(_INTENTS_SQL, tenant_id, since)
    return IntentStats(
        classified=row["classified"],
        intents=json.loads(row["intents"]),
        leads={lead: row[lead] for lead in LEADS},
    )
