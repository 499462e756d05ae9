"""Handlers of the ``billing`` queue for credit-pack payments: Stripe Checkout and LemonSqueezy."""

from __future__ import annotations

from schemas.billing import StripeEvent
from schemas.lemonsqueezy import LemonSqueezyOrder
from schemas.queues import LEMONSQUEEZY_ORDER_ACTOR, STRIPE_PAYMENT_ACTOR
from workers import billing_service
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.resources import Resources

handlers = Handlers()


@handlers.on(STRIPE_PAYMENT_ACTOR)
async def stripe_payment(res: Resources, cmd: StripeEvent) -> Outcome:
    return await billing_service.apply_stripe_event(res.pool, cmd, res.settings.credit_pack_list)


@handlers.on(LEMONSQUEEZY_ORDER_ACTOR)
async def lemonsqueezy_order(res: Resources, cmd: LemonSqueezyOrder) -> Outcome:
    return await billing_service.apply_lemonsqueezy_order(res.pool, cmd, res.settings.credit_pack_list)
