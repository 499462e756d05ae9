"""Stripe subscription and invoice events against the real PostgreSQL: plan, status, allowance once."""

from __future__ import annotations

import time
import uuid

from domain.plans import PlanCatalog
from tests.support.stripe_objects import PLANS_JSON, event, invoice, subscription
from workers import plans_service

CATALOG = PlanCatalog.parse(PLANS_JSON)


def ids() -> tuple[str, str, str]:
    h = uuid.uuid4().hex[:10]
    return f"u-{h}", f"cus_{h}", f"sub_{h}"


async def plan_row(pool, user):
    return await pool.fetchrow("SELECT * FROM user_plans WHERE user_id = $1", user)


async def windows(pool, user) -> list[tuple[str, bool]]:
    """The user's metering windows: (customer, still open)."""
    rows = await pool.fetch(
        "SELECT customer_id, ends_at IS NULL AS open FROM meter_windows WHERE user_id = $1 ORDER BY window_id", user
    )
    return [(r["customer_id"], r["open"]) for r in rows]


async def credits(pool, user) -> int:
    return await pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", f"user:{user}") or 0


async def apply(pool, cmd):
    return await plans_service.apply_event(pool, cmd, CATALOG)


async def test_subscription_lifecycle(ledger):
    user, cus, sub = ids()
    t = int(time.time())
    out = await apply(
        ledger, event("customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), t)
    )
    assert out.status == "applied"
    row = await plan_row(ledger, user)
    assert (row["plan"], row["status"], row["stripe_customer_id"], row["stripe_subscription_id"]) == (
        "starter",
        "active",
        cus,
        sub,
    )
    assert row["current_period_end"] is not None
    assert await windows(ledger, user) == [(cus, True)]

    # invoice.paid grants the allowance once, even when the event is replayed or re-sent under a new id
    inv = invoice(f"in_{uuid.uuid4().hex[:10]}", cus, sub, "price_starter", user_id=user)
    paid = event("invoice.paid", inv, t + 1)
    outcomes = [await apply(ledger, paid) for _ in range(3)]
    assert [o.fresh for o in outcomes] == [True, False, False]
    await apply(ledger, event("invoice.paid", inv, t + 2))  # the same invoice in another event
    assert await credits(ledger, user) == 100
    assert (
        await ledger.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'plan_allowance' AND reference = $1", inv["id"]
        )
        == 1
    )

    # upgrade: the new price sets the plan; the next invoice grants the new allowance
    await apply(
        ledger, event("customer.subscription.updated", subscription(sub, cus, "price_pro", user_id=user), t + 3)
    )
    assert (await plan_row(ledger, user))["plan"] == "pro"
    await apply(ledger, event("invoice.paid", invoice(f"in_{uuid.uuid4().hex[:10]}", cus, sub, "price_pro"), t + 4))
    assert await credits(ledger, user) == 600  # found by customer id: no metadata on that invoice

    # a failed payment: past_due, nothing granted
    failed = invoice(f"in_{uuid.uuid4().hex[:10]}", cus, sub, "price_pro", user_id=user)
    await apply(ledger, event("invoice.payment_failed", failed, t + 5))
    row = await plan_row(ledger, user)
    assert (row["plan"], row["status"]) == ("pro", "past_due") and await credits(ledger, user) == 600
    assert CATALOG.effective(row["plan"], row["status"]).name == "pro"  # Stripe is still retrying

    # deleted: back to Free; the credits already granted stay
    await apply(
        ledger,
        event(
            "customer.subscription.deleted", subscription(sub, cus, "price_pro", status="canceled", user_id=user), t + 6
        ),
    )
    row = await plan_row(ledger, user)
    assert (row["plan"], row["status"]) == ("free", "canceled") and await credits(ledger, user) == 600
    assert CATALOG.effective(row["plan"], row["status"]).name == "free"
    assert await windows(ledger, user) == [(cus, False)]  # past_due kept it open; the deletion closed it


async def test_an_older_event_never_overwrites_a_newer_state(ledger):
    user, cus, sub = ids()
    t = int(time.time())
    deleted = event(
        "customer.subscription.deleted", subscription(sub, cus, "price_pro", status="canceled", user_id=user), t + 10
    )
    updated = event("customer.subscription.updated", subscription(sub, cus, "price_pro", user_id=user), t + 5)
    created = event("customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), t)
    assert (await apply(ledger, deleted)).status == "applied"
    assert (await apply(ledger, updated)).status == "rejected"
    assert (await apply(ledger, created)).status == "rejected"
    row = await plan_row(ledger, user)
    assert (row["plan"], row["status"]) == ("free", "canceled")
    # a late invoice.paid of that subscription still grants its allowance, but does not revive the plan
    await apply(
        ledger, event("invoice.paid", invoice(f"in_{uuid.uuid4().hex[:8]}", cus, sub, "price_pro", user), t + 1)
    )
    assert await credits(ledger, user) == 500
    assert (await plan_row(ledger, user))["status"] == "canceled"


async def test_same_second_events_order_by_their_step(ledger):
    user, cus, sub = ids()
    t = int(time.time())
    # updated (to pro) and created (starter) in the same second, delivered the wrong way round
    await apply(ledger, event("customer.subscription.updated", subscription(sub, cus, "price_pro", user_id=user), t))
    incomplete = subscription(sub, cus, "price_starter", status="incomplete", user_id=user)
    await apply(ledger, event("customer.subscription.created", incomplete, t))
    row = await plan_row(ledger, user)
    assert (row["plan"], row["status"]) == ("pro", "active")


async def test_payment_failed_before_paid_ends_active(ledger):
    user, cus, sub = ids()
    t = int(time.time())
    await apply(
        ledger, event("customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), t)
    )
    inv = invoice(f"in_{uuid.uuid4().hex[:8]}", cus, sub, "price_starter", user_id=user)
    await apply(ledger, event("invoice.paid", inv, t + 20))
    await apply(ledger, event("invoice.payment_failed", inv, t + 10))  # older: the retry that failed first
    row = await plan_row(ledger, user)
    assert row["status"] == "active" and await credits(ledger, user) == 100


async def test_a_new_subscription_replaces_a_canceled_one_and_old_deletes_are_ignored(ledger):
    user, cus, sub = ids()
    t = int(time.time())
    await apply(
        ledger, event("customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), t)
    )
    new_sub = sub + "b"
    await apply(
        ledger, event("customer.subscription.created", subscription(new_sub, cus, "price_pro", user_id=user), t + 5)
    )
    # the old subscription's deletion, newer than the new one's creation, must not drop the user to Free
    old_deleted = subscription(sub, cus, "price_starter", status="canceled", user_id=user)
    out = await apply(ledger, event("customer.subscription.deleted", old_deleted, t + 9))
    assert out.status == "rejected"
    row = await plan_row(ledger, user)
    assert (row["plan"], row["status"], row["stripe_subscription_id"]) == ("pro", "active", new_sub)


async def test_unknown_user_and_unknown_price_are_rejected_without_effect(ledger):
    _, cus, sub = ids()
    t = int(time.time())
    orphan = event("customer.subscription.created", subscription(sub, cus, "price_starter"), t)
    assert (await apply(ledger, orphan)).status == "rejected"
    user, cus2, sub2 = ids()
    unknown = event("customer.subscription.created", subscription(sub2, cus2, "price_nope", user_id=user), t)
    assert (await apply(ledger, unknown)).status == "rejected"
    paid = event("invoice.paid", invoice("in_" + sub2, cus2, sub2, "price_nope", user), t)
    assert (await apply(ledger, paid)).status == "rejected" and await credits(ledger, user) == 0
    reasons = await ledger.fetch(
        "SELECT result->>'reason' AS r FROM inbox WHERE command_id = ANY($1::text[]) ORDER BY created_at",
        [orphan.command_id, unknown.command_id, paid.command_id],
    )
    assert [r["r"] for r in reasons] == ["unknown_user", "unknown_plan", "unknown_plan"]


async def test_concurrent_replays_grant_once(ledger):
    import asyncio

    user, cus, sub = ids()
    t = int(time.time())
    inv = invoice(f"in_{uuid.uuid4().hex[:8]}", cus, sub, "price_pro", user_id=user)
    events = [event("invoice.paid", inv, t)] * 5 + [event("invoice.paid", inv, t + 1) for _ in range(5)]
    await asyncio.gather(*(apply(ledger, e) for e in events))
    assert await credits(ledger, user) == 500
