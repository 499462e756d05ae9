"""Apply Stripe subscription and invoice events: each user's plan and status, and the monthly allowance.

Our user is found through the subscription's metadata ``user_id`` (checkout sets it; Stripe copies
a subscription's metadata onto its invoices as ``subscription_details.metadata``), else through
the Stripe customer or subscription id already stored for a user.

Stripe delivers events out of order and more than once. The stored state remembers the
``created`` time (and a rank, for events of the same second) of the event that wrote it; an
older event changes nothing. Each paid invoice grants its plan's ``monthly_credits`` once: the
ledger reference is the invoice id, so a replayed or re-sent ``invoice.paid`` grants nothing more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from domain.credits import top_up
from domain.plans import ACTIVE_STATUSES, EVENT_RANK, FREE, Plan, PlanCatalog, is_newer
from infra import inbox, ledger, subscriptions
from infra.db import Conn
from schemas.billing import StripeEvent
from schemas.channels import user_channel
from schemas.socket_events import PlanUpdated
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.unit_of_work import command_tx

log = structlog.get_logger(__name__)

PLANS_ACCOUNT = "system:plans"
ALLOWANCE_KIND = "plan_allowance"


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _ts(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if isinstance(epoch, int | float) and epoch > 0 else None


def _id(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object with an ``id``."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def subscription_price(sub: dict[str, Any]) -> str | None:
    for item in _get(sub, "items", "data") or []:
        if price := _id(_get(item, "price")):
            return price
    return _id(_get(sub, "plan"))


def invoice_subscription(inv: dict[str, Any]) -> str | None:
    return _id(inv.get("subscription")) or _id(_get(inv, "parent", "subscription_details", "subscription"))


def invoice_user_id(inv: dict[str, Any]) -> str | None:
    for meta in (
        _get(inv, "subscription_details", "metadata"),
        _get(inv, "parent", "subscription_details", "metadata"),
        inv.get("metadata"),
    ):
        if isinstance(meta, dict) and isinstance(meta.get("user_id"), str) and meta["user_id"]:
            return meta["user_id"]
    return None


def invoice_prices(inv: dict[str, Any]) -> list[str]:
    prices = []
    for line in _get(inv, "lines", "data") or []:
        price = _id(_get(line, "price")) or _id(_get(line, "pricing", "price_details", "price"))
        if price:
            prices.append(price)
    return prices


async def _store_plan(
    conn: Conn,
    user_id: str,
    cmd: StripeEvent,
    *,
    plan: str,
    status: str,
    customer: str | None,
    subscription: str | None,
    period_end: datetime | None = None,
) -> None:
    state = subscriptions.PlanState(
        plan=plan,
        status=status,
        customer_id=customer,
        subscription_id=subscription,
        period_end=period_end,
        state_at=_ts(cmd.created) or subscriptions.EPOCH,
        state_rank=EVENT_RANK.get(cmd.event_type, 0),
        event_id=cmd.event_id,
    )
    stored_customer = await subscriptions.store_plan(conn, user_id, state)
    # One open metering window while the user has an active plan with a customer, none otherwise.
    await subscriptions.keep_meter_window(conn, user_id, stored_customer if status in ACTIVE_STATUSES else None)


async def apply_event(pool: asyncpg.Pool, cmd: StripeEvent, catalog: PlanCatalog, signup_credits: int = 0) -> Outcome:
    """Apply one ``customer.subscription.*`` or ``invoice.*`` event, exactly once."""
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, None)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        if cmd.event_type.startswith("customer.subscription."):
            status, result = await _subscription_event(conn, cmd, catalog)
        elif cmd.event_type in ("invoice.paid", "invoice.payment_failed"):
            status, result = await _invoice_event(conn, cmd, catalog, signup_credits)
        else:
            status, result = "rejected", {"reason": "ignored_event_type"}
        log.info("plans.event", event_id=cmd.event_id, event_type=cmd.event_type, outcome=status, **result)
        user_id = result.get("user_id")
        tx.attribute_to(user_id)
        if status == "applied":
            return tx.apply([await _plan_updated(conn, catalog, user_id, result)] if user_id else [], **result)
        return tx.reject(**result)


async def _plan_updated(conn: Conn, catalog: PlanCatalog, user_id: str, result: dict[str, Any]) -> Emit:
    """What the user's sockets learn: the plan and status as stored now, and any credits granted."""
    plan, status = await subscriptions.plan_and_status(conn, user_id)
    credits = await ledger.credits_of(conn, ledger.user_account(user_id))
    event = PlanUpdated(
        plan=catalog.effective(plan, status).name,
        subscribedPlan=plan,
        status=status,
        creditsGranted=result.get("granted", 0),
        credits=credits or 0,
    )
    return emit("planUpdated", user_channel(user_id), event.model_dump(mode="json"))


async def _subscription_event(
    conn: Conn, cmd: StripeEvent, catalog: PlanCatalog
) -> tuple[inbox.Status, dict[str, Any]]:
    sub = cmd.data_object
    sub_id, customer = _id(sub.get("id")), _id(sub.get("customer"))
    user_id = _get(sub, "metadata", "user_id") or await subscriptions.find_user(conn, customer, sub_id)
    if not isinstance(user_id, str) or not user_id:
        return "rejected", {"reason": "unknown_user", "subscription": sub_id}
    current = await subscriptions.lock_plan(conn, user_id)
    rank = EVENT_RANK.get(cmd.event_type, 0)
    base = {"user_id": user_id, "subscription": sub_id}
    if not is_newer(cmd.created, rank, current.state_at, current.state_rank):
        return "rejected", {**base, "reason": "stale_event"}
    other = current.subscription_id is not None and current.subscription_id != sub_id
    if cmd.event_type == "customer.subscription.deleted":
        if other:
            return "rejected", {**base, "reason": "not_current_subscription"}
        await _store_plan(conn, user_id, cmd, plan=FREE, status="canceled", customer=customer, subscription=sub_id)
        return "applied", {**base, "plan": FREE, "status": "canceled"}
    status = str(sub.get("status") or "active")
    if other and current.status in ACTIVE_STATUSES and status not in ACTIVE_STATUSES:
        return "rejected", {**base, "reason": "not_current_subscription"}
    plan = catalog.by_price(subscription_price(sub)) or catalog.get(_get(sub, "metadata", "plan"))
    if plan is None:
        return "rejected", {**base, "reason": "unknown_plan", "price": subscription_price(sub)}
    period_end = _ts(sub.get("current_period_end")) or _ts(
        _get((_get(sub, "items", "data") or [{}])[0], "current_period_end")
    )
    await _store_plan(
        conn, user_id, cmd, plan=plan.name, status=status, customer=customer, subscription=sub_id, period_end=period_end
    )
    return "applied", {**base, "plan": plan.name, "status": status}


async def _invoice_event(
    conn: Conn, cmd: StripeEvent, catalog: PlanCatalog, signup_credits: int
) -> tuple[inbox.Status, dict[str, Any]]:
    inv = cmd.data_object
    invoice_id, customer, sub_id = _id(inv.get("id")), _id(inv.get("customer")), invoice_subscription(inv)
    if invoice_id is None:
        return "rejected", {"reason": "no_invoice_id"}
    user_id = invoice_user_id(inv) or await subscriptions.find_user(conn, customer, sub_id)
    if user_id is None:
        return "rejected", {"reason": "unknown_user", "invoice": invoice_id}
    current = await subscriptions.lock_plan(conn, user_id)
    plan = next((p for price in invoice_prices(inv) if (p := catalog.by_price(price))), None)
    if plan is None and sub_id is not None and sub_id == current.subscription_id:
        plan = catalog.get(current.plan)
    base: dict[str, Any] = {"user_id": user_id, "invoice": invoice_id, "plan": plan.name if plan else None}
    paid = cmd.event_type == "invoice.paid"
    granted = await _grant_allowance(conn, user_id, plan, invoice_id, signup_credits) if paid else 0
    rank = EVENT_RANK[cmd.event_type]
    mine = sub_id is not None and current.subscription_id in (None, sub_id)
    if mine and current.status != "canceled" and is_newer(cmd.created, rank, current.state_at, current.state_rank):
        status = "active" if paid else "past_due"
        name = plan.name if plan else current.plan
        await _store_plan(conn, user_id, cmd, plan=name, status=status, customer=customer, subscription=sub_id)
        base["status"] = status
    if plan is None and paid:
        return "rejected", {**base, "reason": "unknown_plan", "granted": 0}
    return "applied", {**base, "granted": granted}


async def _grant_allowance(conn: Conn, user_id: str, plan: Plan | None, invoice_id: str, signup_credits: int) -> int:
    """The plan's monthly credits to the user, once per invoice; the credits granted now."""
    if plan is None or plan.monthly_credits <= 0:
        return 0
    account = ledger.user_account(user_id)
    balance = await ledger.lock_or_open(conn, account, signup_credits)
    memo = f"{plan.name} plan monthly allowance"
    if not await ledger.transfer(conn, PLANS_ACCOUNT, account, plan.monthly_credits, ALLOWANCE_KIND, invoice_id, memo):
        return 0
    await ledger.store_balance(conn, account, top_up(balance, plan.monthly_credits))
    return plan.monthly_credits
