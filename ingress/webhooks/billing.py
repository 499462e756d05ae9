"""Payment webhooks (Stripe, LemonSqueezy): verify the signature, dedupe, publish to ``billing``.

As for the channel webhooks (ingress.webhooks.channels): a 2xx only once RabbitMQ confirmed the command,
otherwise 503 so the provider retries; the event id is remembered in Redis only after the
confirm, so a retry after a 503 is published, and a redelivery of an accepted event is not.
The worker's inbox dedupes whatever is published twice.
"""

from __future__ import annotations

from typing import Any

import stripe
import structlog
from aiohttp import web
from pydantic import ValidationError

from infra import json_limits
from infra.json_limits import JsonLimitError
from infra.publisher import PublishFailed
from ingress.http.errors import (
    BadRequest,
    Unauthorized,
    Unavailable,
    json_refused,
)
from ingress.http.http_api import json_body_limits
from ingress.state import APP_STATE, IngressState
from ingress.webhooks.channels import accept_routed, hmac_sha256_hex_ok, unavailable
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


def _event_id(payload: Any) -> str | None:
    value = payload.get("id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


def stripe_command(payload: Any) -> StripeEvent:
    """The command of a verified event. Raises ValueError (ValidationError is one) for an event
    without the fields the workers need, or with numbers or text beyond what they can store."""
    if not isinstance(payload, dict):
        raise ValueError("the event is not a JSON object")
    data = payload.get("data")
    data_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(data_object, dict):
        raise ValueError("the event has no data.object")
    event_id, created = payload.get("id"), payload.get("created")
    if not isinstance(event_id, str):
        raise ValueError("the event has no id")
    return StripeEvent(
        command_id=f"stripe:{event_id}",
        event_id=event_id,
        event_type=payload.get("type"),
        created=0 if created is None else created,
        livemode=payload.get("livemode") is True,
        data_object=data_object,
    )


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'event'}: {first['msg']}"[:300]
    return str(exc)[:300]


@billing_webhook_routes.post("/webhooks/stripe")
async def stripe_webhook(request: web.Request) -> web.Response:
    structlog.contextvars.bind_contextvars(provider="stripe")  # for this request (log_context_middleware)
    state = request.app[APP_STATE]
    secret = state.settings.stripe_webhook_secret.get_secret_value()
    if not secret:
        raise Unavailable("STRIPE_WEBHOOK_SECRET is not set", code="not_configured")
    header = request.headers.get(STRIPE_SIGNATURE_HEADER)
    if not header:
        log.warning("webhook.rejected", provider="stripe", reason="missing_signature")
        raise BadRequest(f"missing {STRIPE_SIGNATURE_HEADER}", code="bad_signature")
    body = await _read(request)
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, secret, tolerance=STRIPE_TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        log.warning("webhook.rejected", provider="stripe", reason="bad_signature", error=str(exc))
        raise BadRequest("the Stripe-Signature does not match this payload", code="bad_signature") from None
    except ValueError:  # not UTF-8 (so not a signed Stripe body either)
        raise BadRequest("the body is not a JSON event") from None
    try:
        # The verified raw JSON: the worker gets plain data, not library objects.
        payload = json_limits.loads(body, json_body_limits(request))
    except JsonLimitError as exc:
        raise json_refused(exc) from None
    except ValueError:  # bad JSON under a valid signature
        raise BadRequest("the body is not a JSON event") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body is not a JSON event")
    try:
        command = stripe_command(payload)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        # Signed by Stripe but unusable (missing or odd fields, absurd numbers): a 2xx, because
        # anything else makes Stripe retry it for days; recorded in the log and as result "invalid".
        problem = _problem(exc)
        log.warning("webhook.invalid", provider="stripe", event_id=_event_id(payload), error=problem)
        return web.json_response({"received": True, "ignored": True, "invalid": problem})
    actor = stripe_actor(command.event_type)
    if actor is None:
        log.debug("webhook.ignored", provider="stripe", event_type=command.event_type)
        return web.json_response({"received": True, "ignored": True})
    try:
        published = await accept(state, actor, command)
    except PublishFailed as exc:
        log.warning("webhook.not_accepted", provider="stripe", command_id=command.command_id, error=str(exc))
        raise unavailable() from None
    return web.json_response({"received": True, "duplicate": not published})


# --- LemonSqueezy ---------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object")
    return value


def _scalar(value: Any, where: str) -> str | None:
    """An id or text as LemonSqueezy sends it (a string or a whole number), as a string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where} must be a string or a whole number")


def _amount(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be a whole number of minor units")
    return value  # bounded by LemonSqueezyOrder


def lemonsqueezy_command(payload: dict[str, Any]) -> LemonSqueezyOrder | None:
    """The order command of an ``order_*`` event; None for events that move no credits."""
    meta = _object(payload.get("meta"), "meta")
    event_name = meta.get("event_name")
    if event_name not in ORDER_EVENTS:
        return None
    data = _object(payload.get("data"), "data")
    attributes = _object(data.get("attributes"), "data.attributes")
    if not attributes:
        raise ValueError("data.attributes is missing")
    custom = _object(meta.get("custom_data"), "meta.custom_data")
    item = _object(attributes.get("first_order_item"), "data.attributes.first_order_item")
    order_id = _scalar(data.get("id"), "data.id")
    if not order_id:
        raise ValueError("data.id is missing")
    refunded = _amount(attributes.get("refunded_amount"), "data.attributes.refunded_amount")
    return LemonSqueezyOrder(
        command_id=lemonsqueezy_command_id(event_name, order_id, refunded),
        event_name=event_name,
        order_id=order_id,
        status=_scalar(attributes.get("status"), "data.attributes.status") or "",
        variant_id=_scalar(item.get("variant_id"), "first_order_item.variant_id"),
        user_id=_scalar(custom.get("user_id"), "meta.custom_data.user_id") or None,
        total=_amount(attributes.get("total"), "data.attributes.total"),
        currency=_scalar(attributes.get("currency"), "data.attributes.currency") or "",
        amount_refunded=refunded,
        test_mode=attributes.get("test_mode") is True,
    )


@billing_webhook_routes.post("/webhooks/lemonsqueezy")
async def lemonsqueezy_webhook(request: web.Request) -> web.Response:
    structlog.contextvars.bind_contextvars(provider="lemonsqueezy")  # for this request (log_context_middleware)
    state = request.app[APP_STATE]
    secret = state.settings.lemonsqueezy_webhook_secret.get_secret_value()
    if not secret:
        raise Unavailable("LEMONSQUEEZY_WEBHOOK_SECRET is not set", code="not_configured")
    provided = request.headers.get(LEMONSQUEEZY_SIGNATURE_HEADER)
    if not provided:
        log.warning("webhook.rejected", provider="lemonsqueezy", reason="missing_signature")
        raise Unauthorized(f"missing {LEMONSQUEEZY_SIGNATURE_HEADER}")
    body = await _read(request)
    if not hmac_sha256_hex_ok(body, provided, secret):
        log.warning("webhook.rejected", provider="lemonsqueezy", reason="bad_signature")
        raise Unauthorized("bad signature")
    try:
        payload = json_limits.loads(body, json_body_limits(request))
        if not isinstance(payload, dict):
            raise ValueError("not an object")
        command = lemonsqueezy_command(payload)
    except JsonLimitError as exc:
        raise json_refused(exc) from None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        # A 400 (recorded): LemonSqueezy retries a refused delivery a few times, then shows it failed.
        problem = _problem(exc)
        log.warning("webhook.malformed", provider="lemonsqueezy", error=problem)
        raise BadRequest(f"not a usable order event: {problem}") from None
    if command is None:
        return web.json_response({"received": True, "ignored": True})
    try:
        published = await accept(state, LEMONSQUEEZY_ORDER_ACTOR, command)
    except PublishFailed as exc:
        log.warning("webhook.not_accepted", provider="lemonsqueezy", command_id=command.command_id, error=str(exc))
        raise unavailable() from None
    return web.json_response({"received": True, "duplicate": not published})
