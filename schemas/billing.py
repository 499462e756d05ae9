"""Commands of the ``billing`` queue that carry provider webhooks to the workers."""

from __future__ import annotations

from typing import Any, Literal

from schemas.base import Command


class StripeEvent(Command):
    """A verified Stripe webhook event, as ``construct_event`` returned it.

    ``command_id`` is ``"stripe:<event id>"``: Stripe's retries and replays of one event are one
    command. Ingress publishes ``checkout.session.*`` and ``charge.*`` events to
    ``STRIPE_PAYMENT_ACTOR`` and ``customer.subscription.*`` and ``invoice.*`` events to
    ``STRIPE_SUBSCRIPTION_ACTOR`` (schemas.queues).
    """

    type: Literal["billing.stripe_event"] = "billing.stripe_event"
    command_id: str
    event_id: str
    event_type: str  # e.g. "checkout.session.completed"
    created: int  # the event's creation time, epoch seconds (events can arrive out of order)
    livemode: bool = False
    data_object: dict[str, Any]  # event.data.object, as plain JSON


class ReportUsage(Command):
    """Report pending AI token usage to Stripe meter events now (besides the periodic run)."""

    type: Literal["billing.report_usage"] = "billing.report_usage"
    command_id: str
