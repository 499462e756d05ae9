"""Credit-pack purchases and refunds against the real PostgreSQL: once-only grants, replays,
out-of-order events, refunds with and without a shortfall, receivables and blocked spending."""

from __future__ import annotations

import time
import uuid
from typing import Any

from domain.credit_packs import credits_to_reverse, parse_credit_packs
from domain.credits import CreditPolicy
from domain.plans import PlanCatalog
from infra import grants, receivables
from infra import ledger as ledger_repo
from schemas.billing import StripeEvent
from schemas.commands import SendChatMessage, send_command_ids
from schemas.lemonsqueezy import LemonSqueezyOrder, lemonsqueezy_command_id
from tests.support.fake_stripe import event
from workers import billing_service, chat_service

PACKS = parse_credit_packs("pack_10:10:500:usd,pack_50:50:2000:usd", "111:pack_10,222:pack_50")
POLICY = CreditPolicy(1000, 50, 86_400)


def new_user() -> str:
    return f"buyer-{uuid.uuid4().hex[:8]}"


def session(user: str, pack: str = "pack_10", credits: int = 10, paid: str = "paid", amount: int = 500) -> dict:
    return {
        "id": f"cs_test_{uuid.uuid4().hex}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": paid,
        "amount_total": amount,
        "currency": "usd",
        "payment_intent": f"pi_test_{uuid.uuid4().hex}",
        "metadata": {"user_id": user, "pack": pack, "credits": str(credits)},
    }


def charge(sess: dict, refunded: int | None = None) -> dict:
    amount = sess["amount_total"]
    return {
        "id": f"ch_{uuid.uuid4().hex}",
        "object": "charge",
        "amount": amount,
        "amount_refunded": amount if refunded is None else refunded,
        "payment_intent": sess["payment_intent"],
    }


def stripe_cmd(payload: dict[str, Any]) -> StripeEvent:
    return StripeEvent(
        command_id=f"stripe:{payload['id']}",
        event_id=payload["id"],
        event_type=payload["type"],
        created=payload["created"],
        data_object=payload["data"]["object"],
    )


async def apply(pool, event_type: str, obj: dict):
    return await billing_service.apply_stripe_event(pool, stripe_cmd(event(event_type, obj)), PACKS)


async def credits(pool, user: str) -> int:
    return await pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", ledger_repo.user_account(user))


async def purchases_of(pool, user: str) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM ledger_transactions t JOIN ledger_postings p USING (txn_id)"
        " WHERE t.kind = 'purchase' AND p.account_id = $1",
        ledger_repo.user_account(user),
    )


def chat(user: str, words: int) -> SendChatMessage:
    command_id, message_id = send_command_ids(user, None)
    return SendChatMessage(
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id="shop",
        message="palabra " * words,
        client_message_id=None,
        accepted_at_ms=int(time.time() * 1000),
    )


async def send(pool, user: str, words: int):
    return await chat_service.send_message(pool, chat(user, words), POLICY, 0, "/billing")


# --- pure rules ------------------------------------------------------------------------------------


def test_refunds_take_back_proportionally_rounded_up():
    assert credits_to_reverse(10, 500, 500) == 10
    assert credits_to_reverse(10, 500, 250) == 5
    assert credits_to_reverse(10, 500, 1) == 1
    assert credits_to_reverse(10, 500, 0) == 0
    assert credits_to_reverse(10, 0, 1) == 10  # unknown price: the whole pack


# --- Stripe ----------------------------------------------------------------------------------------


async def test_paid_checkout_grants_the_pack_once_across_replays_and_event_ids(ledger):
    user = new_user()
    sess = session(user)
    completed = stripe_cmd(event("checkout.session.completed", sess))
    first = await billing_service.apply_stripe_event(ledger, completed, PACKS)
    assert first.fresh and first.status == "applied"
    assert first.emits[0]["event"] == "creditsPurchased" and first.emits[0]["data"]["balance"] == 10
    again = await billing_service.apply_stripe_event(ledger, completed, PACKS)  # the same event, redelivered
    assert not again.fresh and again.emits == first.emits
    # The same session under another event id, and another event type for it.
    await apply(ledger, "checkout.session.completed", sess)
    await apply(ledger, "checkout.session.async_payment_succeeded", sess)
    assert await credits(ledger, user) == 10
    assert await purchases_of(ledger, user) == 1
    ref = await ledger.fetchval(
        "SELECT reference FROM ledger_transactions WHERE kind = 'purchase' AND reference = $1", sess["id"]
    )
    assert ref == sess["id"]  # the ledger reference is the session id


async def test_unpaid_completion_waits_for_async_payment(ledger):
    user = new_user()
    sess = session(user, paid="unpaid")
    outcome = await apply(ledger, "checkout.session.completed", sess)
    assert outcome.status == "rejected" and outcome.emits == []
    assert await credits(ledger, user) is None
    sess["payment_status"] = "paid"
    await apply(ledger, "checkout.session.async_payment_succeeded", sess)
    assert await credits(ledger, user) == 10


async def test_sessions_that_are_not_credit_packs_move_nothing(ledger):
    user = new_user()
    subscription = {**session(user), "mode": "subscription"}
    no_meta = {**session(user), "metadata": {}}
    unknown_pack = {**session(user), "metadata": {"user_id": user, "pack": "nope"}}
    for obj in (subscription, no_meta, unknown_pack):
        assert (await apply(ledger, "checkout.session.completed", obj)).status == "rejected"
    assert (await apply(ledger, "charge.succeeded", charge(session(user)))).status == "rejected"
    assert await credits(ledger, user) is None


async def test_full_refund_with_credits_left_takes_them_all_back(ledger):
    user = new_user()
    sess = session(user)
    await apply(ledger, "checkout.session.completed", sess)
    refunded = charge(sess)
    outcome = await apply(ledger, "charge.refunded", refunded)
    assert outcome.emits[0]["event"] == "creditsRefunded"
    assert outcome.emits[0]["data"] == {
        "provider": "stripe",
        "purchaseRef": sess["id"],
        "creditsReversed": 10,
        "taken": 10,
        "owed": 0,
        "balance": 0,
    }
    await apply(ledger, "charge.refunded", refunded)  # the same refund under a new event id
    assert await credits(ledger, user) == 0
    assert await receivables.outstanding(ledger, ledger_repo.user_account(user)) == 0


async def test_partial_refunds_accumulate_and_older_totals_change_nothing(ledger):
    user = new_user()
    sess = session(user)
    await apply(ledger, "checkout.session.completed", sess)
    await apply(ledger, "charge.refunded", charge(sess, refunded=250))
    assert await credits(ledger, user) == 5
    await apply(ledger, "charge.refunded", charge(sess, refunded=500))
    assert await credits(ledger, user) == 0
    await apply(ledger, "charge.refunded", charge(sess, refunded=250))  # late, out of order
    assert await credits(ledger, user) == 0
    kinds = await ledger.fetch(
        "SELECT reference FROM ledger_transactions WHERE kind = 'refund' AND reference LIKE $1 ORDER BY reference",
        sess["id"] + ":%",
    )
    assert [r["reference"] for r in kinds] == [f"{sess['id']}:10", f"{sess['id']}:5"]


async def test_refund_before_the_purchase_nets_to_zero_when_the_purchase_lands(ledger):
    user = new_user()
    sess = session(user)
    early = await apply(ledger, "charge.refunded", charge(sess))
    assert early.status == "applied" and early.emits == []
    assert await credits(ledger, user) is None
    landed = await apply(ledger, "checkout.session.completed", sess)
    assert [e["event"] for e in landed.emits] == ["creditsPurchased", "creditsRefunded"]
    assert await credits(ledger, user) == 0
    assert await purchases_of(ledger, user) == 1  # granted once and taken back once: the history shows both
    assert await receivables.outstanding(ledger, ledger_repo.user_account(user)) == 0


async def test_refund_shortfall_is_a_receivable_that_blocks_spending_until_covered(ledger):
    user = new_user()
    account = ledger_repo.user_account(user)
    sess = session(user)
    await apply(ledger, "checkout.session.completed", sess)
    assert (await send(ledger, user, 7000)).status == "applied"  # spends 7 of 10
    outcome = await apply(ledger, "charge.refunded", charge(sess))
    assert outcome.emits[0]["data"]["taken"] == 3 and outcome.emits[0]["data"]["owed"] == 7
    assert await credits(ledger, user) == 0
    assert await receivables.outstanding(ledger, account) == 7

    blocked = await send(ledger, user, 5)
    assert blocked.status == "rejected"
    error = blocked.emits[0]
    assert error["event"] == "creditError" and error["room"] == f"u/{user}"
    assert "7 credit(s) owed" in error["data"]["message"] and error["data"]["required"] == 7

    # An admin grant of 4 covers part of it at the next spending attempt: still blocked.
    await grants.grant(ledger, account, 4, "goodwill", "g-1")
    assert (await send(ledger, user, 5)).status == "rejected"
    assert await receivables.outstanding(ledger, account) == 3
    assert await credits(ledger, user) == 0

    # A new pack settles the rest first; the remainder is spendable.
    await apply(ledger, "checkout.session.completed", session(user))
    assert await receivables.outstanding(ledger, account) == 0
    assert await credits(ledger, user) == 7
    assert (await send(ledger, user, 5)).status == "applied"
    settled = await ledger.fetchval(
        "SELECT -sum(p.amount) FROM ledger_transactions t JOIN ledger_postings p USING (txn_id)"
        " WHERE t.kind = 'receivable' AND p.account_id = $1",
        account,
    )
    assert settled == 7  # 4 from the grant, 3 from the new pack: each settled once, in the ledger


async def test_a_zero_word_message_still_goes_out_while_owing(ledger):
    user = new_user()
    sess = session(user)
    await apply(ledger, "checkout.session.completed", sess)
    await send(ledger, user, 10_000)
    await apply(ledger, "charge.refunded", charge(sess))
    assert (await send(ledger, user, 0)).status == "applied"  # free: nothing to spend
    assert (await send(ledger, user, 1)).status == "rejected"


# --- LemonSqueezy ----------------------------------------------------------------------------------


def order(
    event_name: str,
    order_id: str,
    user: str | None,
    *,
    variant: str = "222",
    status: str = "paid",
    total: int = 2000,
    refunded: int = 0,
) -> LemonSqueezyOrder:
    return LemonSqueezyOrder(
        command_id=lemonsqueezy_command_id(event_name, order_id, refunded),
        event_name=event_name,
        order_id=order_id,
        status=status,
        variant_id=variant,
        user_id=user,
        total=total,
        currency="USD",
        amount_refunded=refunded,
    )


async def test_lemonsqueezy_order_grants_once_and_its_refund_takes_back(ledger):
    user = new_user()
    order_id = str(uuid.uuid4().int % 10**9)
    created = order("order_created", order_id, user)
    assert (await billing_service.apply_lemonsqueezy_order(ledger, created, PACKS)).status == "applied"
    replay = await billing_service.apply_lemonsqueezy_order(ledger, created, PACKS)
    assert not replay.fresh
    assert await credits(ledger, user) == 50
    assert (
        await ledger.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'purchase' AND reference = $1",
            f"lemonsqueezy:{order_id}",
        )
        == 1
    )
    refund = order("order_refunded", order_id, user, status="refunded", refunded=2000)
    await billing_service.apply_lemonsqueezy_order(ledger, refund, PACKS)
    await billing_service.apply_lemonsqueezy_order(ledger, refund, PACKS)
    assert await credits(ledger, user) == 0


async def test_lemonsqueezy_refund_first_then_order(ledger):
    user = new_user()
    order_id = str(uuid.uuid4().int % 10**9)
    refund = order("order_refunded", order_id, user, status="refunded", refunded=2000)
    await billing_service.apply_lemonsqueezy_order(ledger, refund, PACKS)
    await billing_service.apply_lemonsqueezy_order(ledger, order("order_created", order_id, user), PACKS)
    assert await credits(ledger, user) == 0


async def test_lemonsqueezy_orders_that_are_not_packs_move_nothing(ledger):
    user = new_user()
    for cmd in (
        order("order_created", "9001", user, variant="999"),  # not a pack variant
        order("order_created", "9002", None),  # no user in custom data
        order("order_created", "9003", user, status="pending"),
    ):
        assert (await billing_service.apply_lemonsqueezy_order(ledger, cmd, PACKS)).status == "rejected"
    assert await credits(ledger, user) is None


async def test_the_ai_agent_is_not_asked_or_charged_while_its_asker_owes(ledger):
    from schemas.commands import AgentReply, agent_reply_ids
    from workers import ai_service
    from workers.providers.model import Completion

    user = new_user()
    sess = session(user)
    await apply(ledger, "checkout.session.completed", sess)
    trigger = await send(ledger, user, 3000)
    await apply(ledger, "charge.refunded", charge(sess))  # 7 back, 3 owed
    trigger_id = trigger.emits[0]["data"]["messageId"]
    command_id, reply_id = agent_reply_ids(trigger_id)
    cmd = AgentReply(
        command_id=command_id,
        reply_id=reply_id,
        trigger_message_id=trigger_id,
        room_id="shop",
        asker=ledger_repo.user_account(user),
        asker_user_id=user,
        requested_at_ms=int(time.time() * 1000),
    )
    inputs = await ai_service.reply_inputs(ledger, cmd, POLICY, 20, PlanCatalog.parse(""))
    assert (inputs.owed, inputs.balance.credits) == (3, 0)
    refusal = ai_service.refusal_before_call(cmd, inputs, 1, time.time(), POLICY, "/b")
    assert refusal is not None and refusal.reason == "receivable_outstanding"  # the pre-call check refuses
    # A reply that was already being answered when the refund landed is not charged either.
    stored = await ai_service.store_reply(ledger, cmd, Completion("hola mundo", 5, 2, "m", 10), POLICY, "AI", "/b")
    assert stored.status == "rejected"
    assert stored.emits[0]["event"] == "creditError" and "3 credit(s) owed" in stored.emits[0]["data"]["message"]
    assert await credits(ledger, user) == 0


async def test_a_purchase_and_its_refund_racing_on_two_workers_never_lose_the_refund(ledger):
    import asyncio

    users = [new_user() for _ in range(10)]
    sessions = [session(user) for user in users]
    await asyncio.gather(
        *(apply(ledger, "checkout.session.completed", s) for s in sessions),
        *(apply(ledger, "charge.refunded", charge(s)) for s in sessions),
    )
    assert [await credits(ledger, user) for user in users] == [0] * 10
    assert (
        await ledger.fetchval(
            "SELECT count(*) FROM early_refunds WHERE payment_ref = ANY($1::text[])",
            [s["payment_intent"] for s in sessions],
        )
        == 0
    )
