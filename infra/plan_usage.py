"""Reads of a user's plan and of the quota units used on a UTC day (shared by workers and ingress)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import asyncpg

from domain.plans import Plan, PlanCatalog, day_start, quota_day, resets_at
from infra import ledger
from infra.db import Conn, ConnOrPool


async def plan_row(conn: ConnOrPool, user_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT plan, status, current_period_end FROM user_plans WHERE user_id = $1 AND state_event_id <> ''", user_id
    )


async def plan_of(conn: ConnOrPool, catalog: PlanCatalog, user_id: str) -> Plan:
    """The plan whose quotas apply to ``user_id`` now (Free without an active subscription)."""
    row = await plan_row(conn, user_id)
    return catalog.effective(row["plan"], row["status"]) if row else catalog.free


async def messages_used(conn: ConnOrPool, user_id: str, day: date) -> int:
    return await conn.fetchval("SELECT messages FROM daily_usage WHERE user_id = $1 AND day = $2", user_id, day) or 0


async def ai_tokens_used(conn: ConnOrPool, user_id: str, day: date) -> int:
    return await conn.fetchval(
        "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM ai_usage"
        " WHERE asker = $1 AND created_at >= $2 AND created_at < $3",
        ledger.user_account(user_id),
        day_start(day),
        resets_at(day),
    )


async def count_message(conn: Conn, user_id: str, at: float) -> None:
    """One more message on the user's daily usage (its day is UTC's, at ``at``)."""
    await conn.execute(
        "INSERT INTO daily_usage (user_id, day, messages) VALUES ($1, $2, 1)"
        " ON CONFLICT (user_id, day) DO UPDATE SET messages = daily_usage.messages + 1",
        user_id,
        quota_day(at),
    )


async def plans_of(conn: ConnOrPool, catalog: PlanCatalog, user_ids: Iterable[str]) -> dict[str, Plan]:
    """:func:`plan_of` for many users in one statement."""
    users = sorted(set(user_ids))
    rows = await conn.fetch(
        "SELECT user_id, plan, status FROM user_plans WHERE user_id = ANY($1::text[]) AND state_event_id <> ''", users
    )
    plans = dict.fromkeys(users, catalog.free)
    plans.update({r["user_id"]: catalog.effective(r["plan"], r["status"]) for r in rows})
    return plans


async def messages_used_on(conn: ConnOrPool, user_days: Iterable[tuple[str, date]]) -> dict[tuple[str, date], int]:
    """:func:`messages_used` for many (user, day) pairs in one statement."""
    pairs = sorted(set(user_days))
    rows = await conn.fetch(
        "SELECT d.user_id, d.day, d.messages FROM daily_usage d"
        " JOIN unnest($1::text[], $2::date[]) AS p(u, day) ON d.user_id = p.u AND d.day = p.day",
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    )
    used = dict.fromkeys(pairs, 0)
    used.update({(r["user_id"], r["day"]): r["messages"] for r in rows})
    return used


async def count_messages(conn: Conn, counts: dict[tuple[str, date], int]) -> None:
    """Add ``n`` messages to each (user, day)'s usage, in one statement."""
    if not counts:
        return
    keys = sorted(counts)
    await conn.execute(
        "INSERT INTO daily_usage (user_id, day, messages) SELECT * FROM unnest($1::text[], $2::date[], $3::int[])"
        " ON CONFLICT (user_id, day) DO UPDATE SET messages = daily_usage.messages + EXCLUDED.messages",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [counts[k] for k in keys],
    )
