"""Plans end to end: signed Stripe webhooks -> ingress -> RabbitMQ -> the billing worker -> PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.support.admin_api import stats
from tests.support.clients import ChatClient, make_token
from tests.support.plans_stack import plans_stack, post_stripe
from tests.support.stripe_objects import event_json, invoice, subscription


@pytest.fixture(scope="module")
def billing(iso, stack_env):
    with plans_stack(iso, stack_env, "plans", ("billing",)) as stack:
        yield stack


async def applied(pool, *event_ids: str, timeout: float = 20) -> list[dict]:
    """Wait until the worker has recorded every event (applied or rejected)."""
    ids = [f"stripe:{e}" for e in event_ids]
    async with asyncio.timeout(timeout):
        while True:
            rows = await pool.fetch("SELECT command_id, status, result FROM inbox WHERE command_id = ANY($1)", ids)
            if len(rows) == len(ids):
                by_id = {r["command_id"]: r for r in rows}
                return [dict(by_id[i]) for i in ids]
            await asyncio.sleep(0.1)


async def plan_of(pool, user: str) -> tuple[str, str]:
    row = await pool.fetchrow("SELECT plan, status FROM user_plans WHERE user_id = $1", user)
    return (row["plan"], row["status"]) if row else ("free", "none")


def ids() -> tuple[str, str, str]:
    h = uuid.uuid4().hex[:10]
    return f"pl-{h}", f"cus_{h}", f"sub_{h}"


async def test_subscription_lifecycle_through_signed_webhooks(billing, http, ledger, clients):
    user, cus, sub = ids()
    t = int(time.time())
    sock = ChatClient(user)
    clients.append(sock)
    await sock.connect(billing.node.port)
    created = event_json("customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), t)
    await post_stripe(http, billing, created)
    await applied(ledger, created["id"])
    assert await plan_of(ledger, user) == ("starter", "active")

    # invoice.paid delivered three times by Stripe, then replayed from the dashboard: one grant
    inv = invoice(f"in_{uuid.uuid4().hex[:10]}", cus, sub, "price_starter", user_id=user)
    paid = event_json("invoice.paid", inv, t + 1)
    answers = [await post_stripe(http, billing, paid) for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    resent = event_json("invoice.paid", inv, t + 2)  # the same invoice under a new event id
    await post_stripe(http, billing, resent)
    await applied(ledger, paid["id"], resent["id"])
    s = await stats(http, billing, user)
    assert s["credits"] == 100
    updates = await sock.wait_count("planUpdated", 3)  # created, paid, the re-sent paid
    assert sorted(u["creditsGranted"] for u in updates) == [0, 0, 100]  # the two paid events may race
    granted = max(updates, key=lambda u: u["creditsGranted"])
    assert granted == {
        "plan": "starter",
        "subscribedPlan": "starter",
        "status": "active",
        "creditsGranted": 100,
        "credits": 100,
    }

    updated = event_json("customer.subscription.updated", subscription(sub, cus, "price_pro", user_id=user), t + 3)
    failed = event_json("invoice.payment_failed", invoice(f"in_{uuid.uuid4().hex[:8]}", cus, sub, "price_pro"), t + 4)
    await post_stripe(http, billing, updated)
    await post_stripe(http, billing, failed)
    await applied(ledger, updated["id"], failed["id"])
    assert await plan_of(ledger, user) == ("pro", "past_due")
    assert (await stats(http, billing, user))["credits"] == 100  # a failed payment grants nothing

    deleted = event_json(
        "customer.subscription.deleted", subscription(sub, cus, "price_pro", status="canceled", user_id=user), t + 5
    )
    await post_stripe(http, billing, deleted)
    await applied(ledger, deleted["id"])
    assert await plan_of(ledger, user) == ("free", "canceled")
    last = await sock.wait_for("planUpdated", lambda u: u["status"] == "canceled")
    assert (last["plan"], last["credits"]) == ("free", 100)
    grants = await ledger.fetchval(
        "SELECT count(*) FROM ledger_transactions WHERE kind = 'plan_allowance' AND reference = $1", inv["id"]
    )
    assert grants == 1


async def test_out_of_order_events_keep_the_newest_state(billing, http, ledger):
    user, cus, sub = ids()
    t = int(time.time())
    events = [
        event_json(
            "customer.subscription.deleted",
            subscription(sub, cus, "price_pro", status="canceled", user_id=user),
            t + 30,
        ),
        event_json("customer.subscription.updated", subscription(sub, cus, "price_pro", user_id=user), t + 20),
        event_json("invoice.paid", invoice(f"in_{uuid.uuid4().hex[:8]}", cus, sub, "price_starter", user), t + 10),
        event_json("customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), t),
    ]
    for e in events:  # newest first: each later delivery is older than the state it finds
        await post_stripe(http, billing, e)
        await applied(ledger, e["id"])
    rows = await applied(ledger, *(e["id"] for e in events))
    assert [r["status"] for r in rows] == ["applied", "rejected", "applied", "rejected"]
    assert await plan_of(ledger, user) == ("free", "canceled")
    assert (await stats(http, billing, user))["credits"] == 100  # the invoice was paid: its allowance stays


async def test_a_subscription_without_a_user_changes_nothing(billing, http, ledger):
    _, cus, sub = ids()
    orphan = event_json("customer.subscription.created", subscription(sub, cus, "price_pro"), int(time.time()))
    await post_stripe(http, billing, orphan)
    [row] = await applied(ledger, orphan["id"])
    assert row["status"] == "rejected" and row["result"]["reason"] == "unknown_user"
    assert not await ledger.fetchval("SELECT count(*) FROM user_plans WHERE stripe_customer_id = $1", cus)


async def test_plan_list_and_a_users_usage_over_http(billing, http, ledger, admin_headers):
    async with http.get(billing.url("/api/plans")) as resp:
        assert resp.status == 200
        plans = {p["name"]: p for p in (await resp.json())["plans"]}
    assert plans["starter"] == {
        "name": "starter",
        "priceId": "price_starter",
        "monthlyCredits": 100,
        "dailyMessages": 3,
        "dailyAiTokens": 1000,
    }
    assert plans["business"]["dailyMessages"] is None

    user, cus, sub = ids()
    url = billing.url(f"/api/plans/usage/{user}")
    async with http.get(url, headers={"Authorization": f"Bearer {make_token(user)}"}) as resp:
        body = await resp.json()
    assert (body["plan"], body["status"], body["quotas"]["messages"]["limit"]) == ("free", None, 2)
    created = event_json(
        "customer.subscription.created", subscription(sub, cus, "price_starter", user_id=user), int(time.time())
    )
    await post_stripe(http, billing, created)
    await applied(ledger, created["id"])
    async with http.get(url, headers=admin_headers) as resp:
        body = await resp.json()
    assert (body["plan"], body["status"], body["subscribedPlan"]) == ("starter", "active", "starter")
    assert body["quotas"]["messages"] == {"limit": 3, "used": 0, "resetsAt": body["quotas"]["aiTokens"]["resetsAt"]}
    assert body["currentPeriodEnd"].endswith("Z") and body["quotas"]["aiTokens"]["limit"] == 1000
    async with http.get(url, headers={"Authorization": f"Bearer {make_token('someone-else')}"}) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    async with http.get(url) as resp:
        assert resp.status == 403
