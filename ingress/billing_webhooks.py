"""Payment webhooks (Stripe, LemonSqueezy): verify the signature, dedupe, publish to ``billing``.

As for the channel webhooks (ingress.webhooks): a 2xx only once RabbitMQ confirmed the command,
otherwise 503 so the provider retries; the event id is remembered in Redis only after the
confirm, so a retry after a 503 is published, and a redelivery of an accepted event is not.
The worker's inbox dedupes whatever is published twice.
"""

from __future__ import annotations

import json
from typing import Any

import stripe
import structlog
from aiohttp import web
from pydantic import ValidationError

from infra.publisher import PublishFailed
from ingress.http_api import json_error
from ingress.state import APP_STATE, IngressState
from ingress.webhooks import accept_routed, hmac_sha256_hex_ok, unavailable
from schemas.base import Command
from schemas.billing import StripeEvent
from schemas.lemonsqueezy import ORDER_EVENTS, LemonSqueezyOrder, lemonsqueezy_command_id
from schemas.queues import BILLING_QUEUE, LEMONSQUEEZY_ORDER_ACTOR, STRIPE_PAYMENT_ACTOR, STRIPE_SUBSCRIPTION_ACTOR

log = structlog.get_logger(__name__)

billing_webhook_routes = web.RouteTableDef()

STRIPE_SIGNATURE_HEADER = "Stripe-Signature"
STRIPE_TOLERANCE_S = 300
LEMONSQUEEZY_SIGNATURE_HEADER = "X-Signature"
MAX_BODY_BYTES = 1024 * 1024


def stripe_actor(event_type: str) -> str | None:
    """Which actor applies a Stripe event; None for events that move no credits or plans."""
    if event_type.startswith(("checkout.session.", "charge.")):
        return STRIPE_PAYMENT_ACTOR
    if event_type.startswith(("customer.subscription.", "invoice.")):
        return STRIPE_SUBSCRIPTION_ACTOR
    return None


async def accept(state: IngressState, actor: str, command: Command) -> bool:
    """Publish to ``billing`` unless accepted before; True if published. Raises PublishFailed
    without a confirm (the same dedupe-after-confirm as the channel webhooks)."""
    return (await accept_routed(state, [(BILLING_QUEUE, actor, command)])).published == 1


async def _read(request: web.Request) -> bytes:
    return await request.clone(client_max_size=MAX_BODY_BYTES).read()


# --- Stripe ---------------------------------------------------------------------------------------


def stripe_command(payload: dict[str, Any]) -> StripeEvent:
    data = payload.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(data_object, dict):
        raise ValueError("the event has no data.object")
    return StripeEvent(
        command_id=f"stripe:{payload['id']}",
        event_id=payload["id"],
        event_type=payload["type"],
        created=int(payload.get("created") or 0),
        livemode=bool(payload.get("livemode", False)),
        data_object=data_object,
    )


@billing_webhook_routes.post("/webhooks/stripe")
async def stripe_webhook(request: web.Request) -> web.Response:
    structlog.contextvars.bind_contextvars(provider="stripe")  # for this request (log_context_middleware)
    state = request.app[APP_STATE]
    secret = state.settings.stripe_webhook_secret.get_secret_value()
    if not secret:
        return json_error(503, "not_configured", "STRIPE_WEBHOOK_SECRET is not set")
    header = request.headers.get(STRIPE_SIGNATURE_HEADER)
    if not header:
        log.warning("webhook.rejected", provider="stripe", reason="missing_signature")
        return json_error(400, "bad_signature", f"missing {STRIPE_SIGNATURE_HEADER}")
    body = await _read(request)
    try:
        event = stripe.Webhook.construct_event(body.decode("utf-8"), header, secret, tolerance=STRIPE_TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        log.warning("webhook.rejected", provider="stripe", reason="bad_signature", error=str(exc))
        return json_error(400, "bad_signature", "the Stripe-Signature does not match this payload")
    except ValueError:  # bad JSON or bad UTF-8 under a valid signature
        return json_error(400, "bad_request", "the body is not a JSON event")
    try:
        # The verified raw JSON, so the worker gets plain data rather than library objects.
        command = stripe_command(json.loads(body))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning("webhook.malformed", provider="stripe", event_id=event.get("id"), error=str(exc))
        return json_error(400, "bad_request", "the event lacks id, type or data.object")
    actor = stripe_actor(command.event_type)
    if actor is None:
        log.debug("webhook.ignored", provider="stripe", event_type=command.event_type)
        return web.json_response({"received": True, "ignored": True})
    try:
        published = await accept(state, actor, command)
    except PublishFailed as exc:
        log.warning("webhook.not_accepted", provider="stripe", command_id=command.command_id, error=str(exc))
        return unavailable()
    return web.json_response({"received": True, "duplicate": not published})


# --- LemonSqueezy ---------------------------------------------------------------------------------


def lemonsqueezy_command(payload: dict[str, Any]) -> LemonSqueezyOrder | None:
    """The order command of an ``order_*`` event; None for events that move no credits."""
    meta = payload.get("meta") or {}
    event_name = meta.get("event_name")
    if event_name not in ORDER_EVENTS:
        return None
    data = payload["data"]
    attributes = data["attributes"]
    custom = meta.get("custom_data") or {}
    item = attributes.get("first_order_item") or {}
    order_id = str(data["id"])
    refunded = int(attributes.get("refunded_amount") or 0)
    variant = item.get("variant_id")
    user_id = custom.get("user_id")
    return LemonSqueezyOrder(
        command_id=lemonsqueezy_command_id(event_name, order_id, refunded),
        event_name=event_name,
        order_id=order_id,
        status=str(attributes.get("status") or ""),
        variant_id=None if variant is None else str(variant),
        user_id=str(user_id) if user_id else None,
        total=int(attributes.get("total") or 0),
        currency=str(attributes.get("currency") or ""),
        amount_refunded=refunded,
        test_mode=bool(attributes.get("test_mode", False)),
    )


@billing_webhook_routes.post("/webhooks/lemonsqueezy")
async def lemonsqueezy_webhook(request: web.Request) -> web.Response:
    structlog.contextvars.bind_contextvars(provider="lemonsqueezy")  # for this request (log_context_middleware)
    state = request.app[APP_STATE]
    secret = state.settings.lemonsqueezy_webhook_secret.get_secret_value()
    if not secret:
        return json_error(503, "not_configured", "LEMONSQUEEZY_WEBHOOK_SECRET is not set")
    provided = request.headers.get(LEMONSQUEEZY_SIGNATURE_HEADER)
    if not provided:
        log.warning("webhook.rejected", provider="lemonsqueezy", reason="missing_signature")
        return json_error(401, "unauthorized", f"missing {LEMONSQUEEZY_SIGNATURE_HEADER}")
    body = await _read(request)
    if not hmac_sha256_hex_ok(body, provided, secret):
        log.warning("webhook.rejected", provider="lemonsqueezy", reason="bad_signature")
        return json_error(401, "unauthorized", "bad signature")
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
        command = lemonsqueezy_command(payload)
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning("webhook.malformed", provider="lemonsqueezy", error=str(exc))
        return json_error(400, "bad_request", "not an order event: expected meta.event_name and data.attributes")
    if command is None:
        return web.json_response({"received": True, "ignored": True})
    try:
        published = await accept(state, LEMONSQUEEZY_ORDER_ACTOR, command)
    except PublishFailed as exc:
        log.warning("webhook.not_accepted", provider="lemonsqueezy", command_id=command.command_id, error=str(exc))
        return unavailable()
    return web.json_response({"received": True, "duplicate": not published})
