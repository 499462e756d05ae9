"""Each user's subscription as Stripe's events wrote it (``user_plans``), and the metering windows
kept while it is active (``meter_windows``).

A plan row remembers the ``created`` time and rank of the event that wrote it
(``state_at``/``state_rank``/``state_event_id``), so that an older event changes nothing; a row
made on first sight, before any event wrote it, has an empty ``state_event_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from domain.plans import FREE
from infra.db import Conn

EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True)
class StoredPlan:
    plan: str
    status: str
    customer_id: str | None
    subscription_id: str | None
    state_at: float | None  # None: no event has written this row yet
    state_rank: int


@dataclass(frozen=True, slots=True)
class PlanState:
    """What a plan event wrote: the plan, its status and the event's place in Stripe's order."""

    plan: str
    status: str
    customer_id: str | None
    subscription_id: str | None
    period_end: datetime | None
    state_at: datetime
    state_rank: int
    event_id: str


async def find_user(conn: Conn, customer: str | None, subscription: str | None) -> str | None:
    """The user whose stored subscription (first) or customer id is the given one."""
    return await conn.fetchval(
        "SELECT user_id FROM user_plans WHERE ($1::text IS NOT NULL AND stripe_subscription_id = $1)"
        " OR ($2::text IS NOT NULL AND stripe_customer_id = $2) ORDER BY (stripe_subscription_id = $1) DESC LIMIT 1",
        subscription,
        customer,
    )


async def lock_plan(conn: Conn, user_id: str) -> StoredPlan:
    """Lock the user's plan row (made on first sight, as Free) for this transaction."""
    await conn.execute(
        "INSERT INTO user_plans (user_id, plan, status, state_at, state_event_id) VALUES ($1, $2, 'none', $3, '')"
        " ON CONFLICT (user_id) DO NOTHING",
        user_id,
        FREE,
        EPOCH,
    )
    row = await conn.fetchrow("SELECT * FROM user_plans WHERE user_id = $1 FOR UPDATE", user_id)
    assert row is not None  # inserted just above if it was not there
    written = bool(row["state_event_id"])
    return StoredPlan(
        row["plan"],
        row["status"],
        row["stripe_customer_id"],
        row["stripe_subscription_id"],
        row["state_at"].timestamp() if written else None,
        row["state_rank"],
    )


async def store_plan(conn: Conn, user_id: str, state: PlanState) -> str | None:
    """Write a plan event's state (ids and period end are kept when the event has none); returns the
    user's Stripe customer id as stored now."""
    return await conn.fetchval(
        "UPDATE user_plans SET plan = $2, status = $3, stripe_customer_id = coalesce($4, stripe_customer_id),"
        " stripe_subscription_id = coalesce($5, stripe_subscription_id),"
        " current_period_end = coalesce($6, current_period_end), state_at = $7, state_rank = $8,"
        " state_event_id = $9, updated_at = now() WHERE user_id = $1 RETURNING stripe_customer_id",
        user_id,
        state.plan,
        state.status,
        state.customer_id,
        state.subscription_id,
        state.period_end,
        state.state_at,
        state.state_rank,
        state.event_id,
    )


async def plan_and_status(conn: Conn, user_id: str) -> tuple[str, str]:
    """The user's subscribed plan and its status, as stored now (the row exists)."""
    row = await conn.fetchrow("SELECT plan, status FROM user_plans WHERE user_id = $1", user_id)
    assert row is not None, f"no plan row for {user_id}"
    return row["plan"], row["status"]


async def keep_meter_window(conn: Conn, user_id: str, customer: str | None) -> None:
    """Keep one open metering window for ``customer`` (the user's plan is active with a customer),
    or none (``customer`` is None)."""
    open_customer = await conn.fetchval(
        "SELECT customer_id FROM meter_windows WHERE user_id = $1 AND ends_at IS NULL", user_id
    )
    if open_customer == customer:
        return
    if open_customer is not None:
        await conn.execute(
            "UPDATE meter_windows SET ends_at = greatest(now(), starts_at) WHERE user_id = $1 AND ends_at IS NULL",
            user_id,
        )
    if customer is not None:
        await conn.execute(
            "INSERT INTO meter_windows (user_id, customer_id, starts_at) VALUES ($1, $2, now())", user_id, customer
        )
