"""Paid calls: one row per call, with the terms it started with and the minutes charged so far.

The row is locked (``FOR UPDATE``) by whatever moves a call on, so that a heartbeat, a hang-up and
the sweeper never charge or end one call twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from infra.db import Conn
from schemas.calls import EndReason


@dataclass(frozen=True, slots=True)
class Call:
    call_id: str
    caller_id: str
    callee_id: str
    status: str
    price_per_minute: int
    fee_pct: int
    minute_ms: int
    started_ms: int
    last_seen_ms: int
    ended_ms: int | None
    end_reason: EndReason | None
    minutes_charged: int
    credits_charged: int


@dataclass(frozen=True, slots=True)
class ActiveCall:
    call_id: str
    caller_id: str
    callee_id: str
    started_ms: int
    last_seen_ms: int


_COLUMNS = (
    "call_id, caller_id, callee_id, status, price_per_minute, fee_pct, minute_ms, started_ms,"
    " last_seen_ms, ended_ms, end_reason, minutes_charged, credits_charged"
)


async def lock(conn: Conn, call_id: str) -> Call | None:
    """The call, locked until the transaction ends; None if there is no such call."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM calls WHERE call_id = $1 FOR UPDATE", call_id)
    return None if row is None else Call(**dict(row))


async def start(
    conn: Conn,
    call_id: str,
    caller_id: str,
    callee_id: str,
    *,
    price_per_minute: int,
    fee_pct: int,
    minute_ms: int,
    started_ms: int,
) -> Call:
    """Store a new active call with its terms, and lock it."""
    row = await conn.fetchrow(
        "INSERT INTO calls (call_id, caller_id, callee_id, status, price_per_minute, fee_pct, minute_ms,"
        " started_ms, last_seen_ms) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $7) RETURNING " + _COLUMNS,
        call_id,
        caller_id,
        callee_id,
        price_per_minute,
        fee_pct,
        minute_ms,
        started_ms,
    )
    assert row is not None  # INSERT ... RETURNING returns the row it stored
    return Call(**dict(row))


async def store_progress(
    conn: Conn,
    call_id: str,
    *,
    minutes_charged: int,
    credits_added: int,
    seen_ms: int,
    ended_ms: int | None,
    end_reason: EndReason | None,
) -> Call:
    """Store the minutes charged so far and the latest time seen; end the call if ``ended_ms`` is set."""
    row = await conn.fetchrow(
        "UPDATE calls SET minutes_charged = $2, credits_charged = credits_charged + $3,"
        " last_seen_ms = GREATEST(last_seen_ms, $4),"
        " status = CASE WHEN $5::bigint IS NULL THEN status ELSE 'ended' END,"
        " ended_ms = $5, end_reason = $6, updated_at = now() WHERE call_id = $1 RETURNING " + _COLUMNS,
        call_id,
        minutes_charged,
        credits_added,
        seen_ms,
        ended_ms,
        end_reason,
    )
    assert row is not None, f"no call {call_id}"
    return Call(**dict(row))


async def active_calls(pool: asyncpg.Pool, limit: int = 2000) -> list[ActiveCall]:
    rows = await pool.fetch(
        "SELECT call_id, caller_id, callee_id, started_ms, last_seen_ms FROM calls WHERE status = 'active'"
        " ORDER BY last_seen_ms LIMIT $1",
        limit,
    )
    return [ActiveCall(**dict(r)) for r in rows]


async def stale_calls(pool: asyncpg.Pool, now_ms: int, timeout_ms: int, limit: int = 500) -> list[str]:
    """Active calls whose last heartbeat is at least ``timeout_ms`` old at ``now_ms``, oldest first."""
    rows = await pool.fetch(
        "SELECT call_id FROM calls WHERE status = 'active' AND last_seen_ms <= $1 ORDER BY last_seen_ms LIMIT $2",
        now_ms - timeout_ms,
        limit,
    )
    return [r["call_id"] for r in rows]
