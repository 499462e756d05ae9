"""Apply payment events: credit-pack purchases and their refunds, each exactly once.

Every event is applied in one transaction with its inbox row. A purchase's grant is the ledger
transfer (``purchase``, purchase_ref): the Stripe Checkout Session id or ``lemonsqueezy:<order>``,
so the same session reported by two events (``checkout.session.completed`` and
``…async_payment_succeeded``) or replayed under new event ids grants once. A refund takes back
``ceil(credits × refunded / paid)`` credits in total, as far as the balance allows
(``refund``, ``<purchase_ref>:<credits reversed so far>``); the shortfall becomes a receivable
(infra.receivables). Refunds and purchases of one payment are serialized by an advisory lock
on the payment; a refund that arrives before its purchase is kept and applied when it lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from domain.credit_packs import CreditPacks, credits_to_reverse, split_reversal
from domain.credits import top_up
from infra import inbox, ledger, purchases, receivables
from infra.db import Conn
from infra.purchases import Payment
from schemas.billing import StripeEvent
from schemas.channels import user_channel
from schemas.lemonsqueezy import LemonSqueezyOrder
from schemas.purchases import CreditsPurchased, CreditsRefunded
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.unit_of_work import CommandTx, command_tx

log = structlog.get_logger(__name__)

PURCHASE_KIND = "purchase"
REFUND_KIND = "refund"
PAID_SESSION_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


@dataclass(frozen=True, slots=True)
class Refund:
    provider: str
    payment_ref: str
    amount: int  # what was paid, minor units
    amount_refunded: int  # refunded so far, cumulative


class NotApplicable(Exception):
    """An event that moves no credits (not paid, not a credit pack, …): recorded and skipped."""


# --- provider payloads -> Payment / Refund -----------------------------------------------------


def _ref_id(value: Any) -> str | None:
    """A Stripe reference, whether sent as an id or expanded into an object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def stripe_payment(session: dict[str, Any], packs: CreditPacks) -> Payment:
    if session.get("object") != "checkout.session":
        raise NotApplicable("not a checkout session")
    if session.get("mode", "payment") != "payment":
        raise NotApplicable(f"a {session.get('mode')} session is not a credit pack")
    if session.get("payment_status") != "paid":
        raise NotApplicable(f"payment_status is {session.get('payment_status')!r}")
    metadata = session.get("metadata") or {}
    user_id, pack_id = metadata.get("user_id"), metadata.get("pack")
    if not isinstance(user_id, str) or not user_id or not isinstance(pack_id, str) or not pack_id:
        raise NotApplicable("no user_id/pack in the session's metadata")
    # The credits sold are those written into the session at checkout, not today's pack list.
    raw_credits = metadata.get("credits")
    if isinstance(raw_credits, str) and raw_credits.isdigit() and int(raw_credits) > 0:
        credits = int(raw_credits)
    elif (pack := packs.get(pack_id)) is not None:
        credits = pack.credits
    else:
        raise NotApplicable(f"unknown pack {pack_id!r}")
    session_id = _ref_id(session.get("id"))
    if session_id is None:
        raise NotApplicable("a session without an id")
    return Payment(
        provider="stripe",
        purchase_ref=session_id,
        payment_ref=_ref_id(session.get("payment_intent")) or session_id,
        user_id=user_id,
        pack=pack_id,
        credits=credits,
        amount=int(session.get("amount_total") or 0),
        currency=str(session.get("currency") or ""),
    )


def stripe_refund(charge: dict[str, Any]) -> Refund:
    if charge.get("object") != "charge":
        raise NotApplicable("not a charge")
    payment_ref = _ref_id(charge.get("payment_intent"))
    if payment_ref is None:
        raise NotApplicable("a charge without a payment_intent is not a checkout purchase")
    refunded = int(charge.get("amount_refunded") or 0)
    if refunded <= 0:
        raise NotApplicable("nothing refunded")
    return Refund("stripe", payment_ref, int(charge.get("amount") or 0), refunded)


def lemonsqueezy_ref(order_id: str) -> str:
    return f"lemonsqueezy:{order_id}"


def lemonsqueezy_payment(cmd: LemonSqueezyOrder, packs: CreditPacks) -> Payment:
    if cmd.status != "paid":
        raise NotApplicable(f"order status is {cmd.status!r}")
    pack = packs.for_variant(cmd.variant_id or "")
    if pack is None:
        raise NotApplicable(f"variant {cmd.variant_id!r} is not a credit pack")
    if not cmd.user_id:
        raise NotApplicable("no user_id in the order's custom data")
    ref = lemonsqueezy_ref(cmd.order_id)
    return Payment("lemonsqueezy", ref, ref, cmd.user_id, pack.pack_id, pack.credits, cmd.total, cmd.currency.lower())


def lemonsqueezy_refund(cmd: LemonSqueezyOrder) -> Refund:
    refunded = cmd.amount_refunded or (cmd.total if cmd.status == "refunded" else 0)
    if refunded <= 0:
        raise NotApplicable("nothing refunded")
    return Refund("lemonsqueezy", lemonsqueezy_ref(cmd.order_id), cmd.total, refunded)


# --- commands ---------------------------------------------------------------------------------


async def apply_stripe_event(pool: asyncpg.Pool, cmd: StripeEvent, packs: CreditPacks) -> Outcome:
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, None)) as tx:
        if tx.replayed:
            return tx.replayed
        try:
            if cmd.event_type in PAID_SESSION_EVENTS:
                emits = await record_payment(tx.conn, stripe_payment(cmd.data_object, packs))
            elif cmd.event_type == "charge.refunded":
                emits = await record_refund(tx.conn, stripe_refund(cmd.data_object))
            else:
                raise NotApplicable(f"{cmd.event_type} moves no credits")
        except NotApplicable as why:
            return _skip(tx, str(why), event_type=cmd.event_type)
        return tx.apply(emits, event_type=cmd.event_type)


async def apply_lemonsqueezy_order(pool: asyncpg.Pool, cmd: LemonSqueezyOrder, packs: CreditPacks) -> Outcome:
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.user_id)) as tx:
        if tx.replayed:
            return tx.replayed
        try:
            if cmd.event_name == "order_created":
                emits = await record_payment(tx.conn, lemonsqueezy_payment(cmd, packs))
            else:
                emits = await record_refund(tx.conn, lemonsqueezy_refund(cmd))
        except NotApplicable as why:
            return _skip(tx, str(why), event_type=cmd.event_name)
        return tx.apply(emits, event_type=cmd.event_name)


def _skip(tx: CommandTx, reason: str, **extra: Any) -> Outcome:
    log.info("billing.event_skipped", command_id=tx.command_id, reason=reason, **extra)
    return tx.reject(reason=reason, **extra)


# --- the money --------------------------------------------------------------------------------


async def record_payment(conn: Conn, p: Payment) -> list[Emit]:
    """Grant a paid pack once; settle receivables from it; apply a refund that came first."""
    await purchases.lock_payment(conn, p.payment_ref)
    if not await purchases.record(conn, p):
        log.info("billing.purchase_known", purchase_ref=p.purchase_ref)
        return []  # another event of the same purchase granted it
    account = ledger.user_account(p.user_id)
    balance = await ledger.lock_or_open(conn, account)
    await ledger.transfer(
        conn, receivables.PURCHASES, account, p.credits, PURCHASE_KIND, p.purchase_ref, f"{p.provider} {p.pack}"
    )
    balance = top_up(balance, p.credits)
    await ledger.store_balance(conn, account, balance)
    balance, _ = await receivables.settle(conn, account, balance)
    purchased = CreditsPurchased(
        provider=p.provider, purchaseRef=p.purchase_ref, pack=p.pack, credits=p.credits, balance=balance.credits
    )
    emits = [emit("creditsPurchased", user_channel(p.user_id), purchased.model_dump(mode="json"))]
    early = await purchases.take_early_refund(conn, p.payment_ref)
    if early is not None:
        emits += await _reverse(conn, p.payment_ref, early.amount or p.amount, early.amount_refunded)
    return emits


async def record_refund(conn: Conn, r: Refund) -> list[Emit]:
    await purchases.lock_payment(conn, r.payment_ref)
    if not await purchases.known(conn, r.payment_ref):
        # Webhooks are not ordered: keep the largest refunded total until the purchase lands.
        await purchases.keep_early_refund(conn, r.payment_ref, r.provider, r.amount_refunded, r.amount)
        log.info("billing.refund_before_purchase", payment_ref=r.payment_ref)
        return []
    return await _reverse(conn, r.payment_ref, r.amount, r.amount_refunded)


async def _reverse(conn: Conn, payment_ref: str, amount_paid: int, amount_refunded: int) -> list[Emit]:
    """Take back what the refunded total says, minus what earlier refunds already took."""
    purchase = await purchases.lock(conn, payment_ref)
    target = credits_to_reverse(purchase.credits, amount_paid or purchase.amount, amount_refunded)
    due = target - purchase.credits_reversed
    await purchases.record_reversal(conn, payment_ref, amount_refunded, target)
    if due <= 0:
        return []  # an older or repeated refund total: already taken back
    ref, user_id = purchase.purchase_ref, purchase.user_id
    account = ledger.user_account(user_id)
    balance = await ledger.lock_or_open(conn, account)
    taken, short = split_reversal(due, balance.credits)
    if taken:
        await ledger.transfer(conn, account, receivables.PURCHASES, taken, REFUND_KIND, f"{ref}:{target}", "refund")
    if short:
        await receivables.open_shortfall(conn, account, ref, target, short)
    owed = await receivables.outstanding(conn, account)
    log.info("billing.refunded", purchase_ref=ref, reversed=due, taken=taken, shortfall=short, owed=owed)
    refunded = CreditsRefunded(
        provider=purchase.provider,
        purchaseRef=ref,
        creditsReversed=due,
        taken=taken,
        owed=owed,
        balance=balance.credits - taken,
    )
    return [emit("creditsRefunded", user_channel(user_id), refunded.model_dump(mode="json"))]
