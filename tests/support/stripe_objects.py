"""Stripe subscription and invoice events shaped as Stripe sends them (API 2025+ and older fields)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from schemas.billing import StripeEvent

PLANS_JSON = (
    '{"starter": {"price_id": "price_starter", "monthly_credits": 100, "daily_messages": 3,'
    ' "daily_ai_tokens": 1000},'
    ' "pro": {"price_id": "price_pro", "monthly_credits": 500, "daily_messages": 1000, "daily_ai_tokens": 100000},'
    ' "free": {"daily_messages": 2, "daily_ai_tokens": 10}}'
)


def subscription(
    sub_id: str, customer: str, price: str, status: str = "active", user_id: str | None = None
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "metadata": {"user_id": user_id} if user_id else {},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{uuid.uuid4().hex[:10]}",
                    "object": "subscription_item",
                    "price": {"id": price, "object": "price", "recurring": {"interval": "month"}},
                    "current_period_start": now,
                    "current_period_end": now + 30 * 86_400,
                }
            ],
        },
    }


def invoice(invoice_id: str, customer: str, sub_id: str, price: str, user_id: str | None = None) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "status": "paid",
        "billing_reason": "subscription_cycle",
        "amount_paid": 1900,
        "currency": "usd",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": sub_id, "metadata": {"user_id": user_id} if user_id else {}},
        },
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": f"il_{uuid.uuid4().hex[:10]}",
                    "object": "line_item",
                    "amount": 1900,
                    "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_x"}},
                }
            ],
        },
    }


def event(event_type: str, obj: dict[str, Any], created: int, event_id: str | None = None) -> StripeEvent:
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    return StripeEvent(
        command_id=f"stripe:{event_id}", event_id=event_id, event_type=event_type, created=created, data_object=obj
    )


def event_json(event_type: str, obj: dict[str, Any], created: int, event_id: str | None = None) -> dict[str, Any]:
    """The whole webhook body Stripe would POST for this event."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
        "request": {"id": None, "idempotency_key": None},
    }
