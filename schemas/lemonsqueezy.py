"""The ``billing`` queue's command for a verified LemonSqueezy order webhook."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from schemas.base import Command
from schemas.storable import MinorUnits, check_storable

ORDER_EVENTS = ("order_created", "order_refunded")


def lemonsqueezy_command_id(event_name: str, order_id: str, amount_refunded: int) -> str:
    """One command per (order, event); each new refunded total of an order is a new refund event."""
    base = f"lemonsqueezy:{order_id}:{event_name}"
    return f"{base}:{amount_refunded}" if event_name == "order_refunded" else base


class LemonSqueezyOrder(Command):
    """The fields of an ``orders`` webhook the worker needs, as LemonSqueezy sent them."""

    type: Literal["billing.lemonsqueezy_order"] = "billing.lemonsqueezy_order"
    command_id: str = Field(min_length=1, max_length=300)
    event_name: Literal["order_created", "order_refunded"]
    order_id: str = Field(min_length=1, max_length=64)
    status: str = Field(max_length=64)  # pending, failed, paid, refunded, partial_refund, fraudulent
    variant_id: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, min_length=1, max_length=128)  # meta.custom_data.user_id
    total: MinorUnits  # minor units
    currency: str = Field(default="", max_length=16)
    amount_refunded: MinorUnits = 0
    test_mode: bool = False

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)
