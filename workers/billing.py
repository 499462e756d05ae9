"""Actors of the ``billing`` queue for credit-pack payments: Stripe Checkout and LemonSqueezy."""

from __future__ import annotations

from typing import Any

import dramatiq
import pydantic
import structlog

from schemas.billing import StripeEvent
from schemas.lemonsqueezy import LemonSqueezyOrder
from schemas.queues import BILLING_QUEUE, LEMONSQUEEZY_ORDER_ACTOR, STRIPE_PAYMENT_ACTOR
from workers import billing_service
from workers.broker import resources
from workers.effects import carry_out

log = structlog.get_logger(__name__)

# Money must not be dropped on a transient fault: retry for about ten minutes, then dead-letter
# (the inbox records it as failed, so a replay of the provider's event applies it later).
RETRY_POLICY: dict[str, Any] = {
    "max_retries": 12,
    "min_backoff": 500,
    "max_backoff": 120_000,
    "throws": (pydantic.ValidationError,),
}


@dramatiq.actor(queue_name=BILLING_QUEUE, actor_name=STRIPE_PAYMENT_ACTOR, **RETRY_POLICY)
async def billing_stripe_payment(command: dict[str, Any]) -> str:
    cmd = StripeEvent.model_validate(command)
    res = await resources.get()
    outcome = await billing_service.apply_stripe_event(res.pool, cmd, res.settings.credit_pack_list)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("billing.stripe_event", command_id=cmd.command_id, event_type=cmd.event_type,
             status=outcome.status, duplicate=not outcome.fresh)  # fmt: skip
    return outcome.log_status  # for the event log (workers/event_log.py)


@dramatiq.actor(queue_name=BILLING_QUEUE, actor_name=LEMONSQUEEZY_ORDER_ACTOR, **RETRY_POLICY)
async def billing_lemonsqueezy_order(command: dict[str, Any]) -> str:
    cmd = LemonSqueezyOrder.model_validate(command)
    res = await resources.get()
    outcome = await billing_service.apply_lemonsqueezy_order(res.pool, cmd, res.settings.credit_pack_list)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("billing.lemonsqueezy_order", command_id=cmd.command_id, event_name=cmd.event_name,
             status=outcome.status, duplicate=not outcome.fresh)  # fmt: skip
    return outcome.log_status
