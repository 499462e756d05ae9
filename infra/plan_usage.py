"""Reads of a user's plan and of the quota units used on a UTC day (shared by workers and ingress)."""

from __future__ import annotations

from datetime import date

import asyncpg

from domain.plans import Plan, PlanCatalog, day_start, quota_day, resets_at
from infra import ledger

Conn = asyncpg.Connection | asyncpg.Pool


async def plan_row(conn: Conn, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT plan, status, current_period_end FROM user_plans WHERE user_id = $1 AND state_event_id <> ''", user_id
    )


async def plan_of(conn: Conn, catalog: PlanCatalog, user_id: str) -> Plan:
    """The plan whose quotas apply to ``user_id`` now (Free without an active subscription)."""
    row = await plan_row(conn, user_id)
    return catalog.effective(row["plan"], row["status"]) if row else catalog.free


async def messages_used(conn: Conn, user_id: str, day: date) -> int:
    return await conn.fetchval("SELECT messages FROM daily_usage WHERE user_id = $1 AND day = $2", user_id, day) or 0


async def ai_tokens_used(conn: Conn, user_id: str, day: date) -> int:
    return await conn.fetchval(
        "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM ai_usage"
        " WHERE asker = $1 AND created_at >= $2 AND created_at < $3",
        ledger.user_account(user_id),
        day_start(day),
        resets_at(day),
    )


async def count_message(conn: asyncpg.Connection, user_id: str, at: float) -> None:
    """One more message on the user's daily usage (its day is UTC's, at ``at``)."""
    await conn.execute(
        "INSERT INTO daily_usage (user_id, day, messages) VALUES ($1, $2, 1)"
        " ON CONFLICT (user_id, day) DO UPDATE SET messages = daily_usage.messages + 1",
        user_id,
        quota_day(at),
    )
