"""Commands of the ``billing`` queue that carry provider webhooks to the workers."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.base import Command
from schemas.storable import EpochS, MinorUnits, check_storable, find_unbounded_number

MAX_METADATA_CREDITS = 1_000_000_000  # as GrantCredits: no pack sells more at once
_CREDITS = re.compile(r"^[0-9]{1,10}$")


class _Shape(BaseModel):
    """Fields a worker reads, typed and bounded; everything else passes through unchecked."""

    model_config = ConfigDict(extra="allow", strict=True)


class StripeItem(_Shape):
    current_period_end: EpochS | None = None
    current_period_start: EpochS | None = None


class StripeList(_Shape):
    data: list[StripeItem] = Field(default_factory=list, max_length=1_000)


class StripeObject(_Shape):
    """``event.data.object`` as the billing and plan workers read it (workers/billing_service.py,
    workers/plans_service.py): a checkout session, charge, subscription or invoice."""

    amount_total: MinorUnits | None = None
    amount: MinorUnits | None = None
    amount_refunded: MinorUnits | None = None
    created: EpochS | None = None
    current_period_end: EpochS | None = None
    current_period_start: EpochS | None = None
    metadata: dict[str, str] | None = None
    items: StripeList | None = None
    lines: StripeList | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in value.items()):
            raise ValueError("metadata: at most 50 keys of 40 characters, values of 500")  # Stripe's limits
        credits = value.get("credits")
        if credits is not None and (not _CREDITS.match(credits) or int(credits) > MAX_METADATA_CREDITS):
            raise ValueError(f"metadata.credits must be a whole number of at most {MAX_METADATA_CREDITS}")
        user_id = value.get("user_id")
        if user_id is not None and not 1 <= len(user_id) <= 128:
            raise ValueError("metadata.user_id must be 1-128 characters")
        return value


class StripeEvent(Command):
    """A verified Stripe webhook event, as ``construct_event`` returned it.

    ``command_id`` is ``"stripe:<event id>"``: Stripe's retries and replays of one event are one
    command. Ingress publishes ``checkout.session.*`` and ``charge.*`` events to
    ``STRIPE_PAYMENT_ACTOR`` and ``customer.subscription.*`` and ``invoice.*`` events to
    ``STRIPE_SUBSCRIPTION_ACTOR`` (schemas.queues). Numbers and text are bounded here, so an
    absurd event is refused at the edge instead of failing in a worker until dead-lettered.
    """

    type: Literal["billing.stripe_event"] = "billing.stripe_event"
    command_id: str = Field(min_length=1, max_length=300)
    event_id: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=255)  # e.g. "checkout.session.completed"
    created: EpochS  # the event's creation time, epoch seconds (events can arrive out of order)
    livemode: bool = False
    data_object: dict[str, Any]  # event.data.object, as plain JSON

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)

    @field_validator("data_object")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if (where := find_unbounded_number(value, "data.object")) is not None:
            raise ValueError(f"{where}: a number that is not finite or lies beyond int64")
        StripeObject.model_validate(value)
        return value


class ReportUsage(Command):
    """Report pending AI token usage to Stripe meter events now (besides the periodic run)."""

    type: Literal["billing.report_usage"] = "billing.report_usage"
    command_id: str
