"""The AI usage still to report to Stripe's meter, and the lock that lets one reporter run at a time.

A usage row (one successful model call) is reported when it was made inside a metering window
(``meter_windows``: while its user had an active plan with a Stripe customer); it is marked
``meter_reported_at`` once Stripe accepted it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from infra.db import Conn, ConnOrPool

REPORT_LOCK: Final = 0x6D65_7465_7273  # one reporter at a time across the deployment ("meters")


@dataclass(frozen=True, slots=True)
class UsageRow:
    call_id: uuid.UUID
    customer_id: str
    tokens: int
    timestamp: int


async def pending(conn: ConnOrPool, limit: int) -> list[UsageRow]:
    """Unreported successful calls made inside a metering window, oldest first."""
    rows = await conn.fetch(
        "SELECT u.call_id, w.customer_id, u.prompt_tokens + u.completion_tokens AS tokens, u.created_at"
        " FROM ai_usage u JOIN meter_windows w ON u.asker = 'user:' || w.user_id"
        " AND u.created_at >= w.starts_at AND (w.ends_at IS NULL OR u.created_at < w.ends_at)"
        " WHERE u.meter_reported_at IS NULL AND u.status = 'ok' AND u.prompt_tokens + u.completion_tokens > 0"
        " ORDER BY u.created_at LIMIT $1",
        limit,
    )
    return [UsageRow(r["call_id"], r["customer_id"], r["tokens"], int(r["created_at"].timestamp())) for r in rows]


async def mark_reported(conn: ConnOrPool, call_ids: Sequence[uuid.UUID]) -> None:
    """Mark the rows Stripe accepted (a row marked already keeps its first time)."""
    await conn.execute(
        "UPDATE ai_usage SET meter_reported_at = now() WHERE call_id = ANY($1::uuid[]) AND meter_reported_at IS NULL",
        list(call_ids),
    )


async def try_lock_reporter(conn: Conn) -> bool:
    """Take the reporter lock on this connection's session; False if another process holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", REPORT_LOCK))


async def unlock_reporter(conn: Conn) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", REPORT_LOCK)
