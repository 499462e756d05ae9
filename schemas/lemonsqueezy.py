"""The ``billing`` queue's command for a verified LemonSqueezy order webhook."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Command

ORDER_EVENTS = ("order_created", "order_refunded")


def lemonsqueezy_command_id(event_name: str, order_id: str, amount_refunded: int) -> str:
    """One command per (order, event); each new refunded total of an order is a new refund event."""
    base = f"lemonsqueezy:{order_id}:{event_name}"
    return f"{base}:{amount_refunded}" if event_name == "order_refunded" else base


class LemonSqueezyOrder(Command):
    """The fields of an ``orders`` webhook the worker needs, as LemonSqueezy sent them."""

    type: Literal["billing.lemonsqueezy_order"] = "billing.lemonsqueezy_order"
    command_id: str
    event_name: Literal["order_created", "order_refunded"]
    order_id: str = Field(min_length=1, max_length=64)
    status: str  # pending, failed, paid, refunded, partial_refund, fraudulent
    variant_id: str | None = None
    user_id: str | None = None  # meta.custom_data.user_id, set on the checkout link
    total: int = Field(ge=0)  # minor units
    currency: str = ""
    amount_refunded: int = Field(default=0, ge=0)
    test_mode: bool = False
