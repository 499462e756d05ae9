"""Payment webhooks (Stripe, LemonSqueezy): each a :class:`~ingress.webhooks.signed.SignedWebhook`
whose command goes to the ``billing`` queue.

As for the channel webhooks: a 2xx only once RabbitMQ confirmed the command, otherwise 503 so
the provider retries; the event id is remembered in Redis only after the confirm, so a retry
after a 503 is published, and a redelivery of an accepted event is not
(ingress.webhooks.acceptance). The worker's inbox dedupes whatever is published twice.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import stripe
import structlog
from aiohttp import web
from pydantic import ValidationError

from infra import json_limits
from infra.json_limits import JsonLimitError
from ingress.http.api_docs import RawBody
from ingress.http.errors import BadRequest, Unauthorized, first_problem, json_refused
from ingress.http.http_api import json_body_limits
from ingress.webhooks.acceptance import Outcome
from ingress.webhooks.signed import (
    BadSignature,
    Delivery,
    Signature,
    SignedWebhook,
    hmac_sha256_hex_ok,
    read_body,
    signed_webhook,
)
from schemas.base import Command
from schemas.billing import StripeEvent
from schemas.lemonsqueezy import ORDER_EVENTS, LemonSqueezyOrder, lemonsqueezy_command_id
from schemas.queues import BILLING_QUEUE, LEMONSQUEEZY_ORDER_ACTOR, STRIPE_PAYMENT_ACTOR, STRIPE_SUBSCRIPTION_ACTOR

log = structlog.get_logger(__name__)

billing_webhook_routes = web.RouteTableDef()

ACKNOWLEDGED = {200: "received; duplicate (accepted before), or ignored (invalid: why, if it was unusable)"}
STRIPE_SIGNATURE_HEADER = "Stripe-Signature"
STRIPE_TOLERANCE_S = 300
LEMONSQUEEZY_SIGNATURE_HEADER = "X-Signature"


def stripe_actor(event_type: str) -> str | None:
    """Which actor applies a Stripe event; None for events that move no credits or plans."""
    if event_type.startswith(("checkout.session.", "charge.")):
        return STRIPE_PAYMENT_ACTOR
    if event_type.startswith(("customer.subscription.", "invoice.")):
        return STRIPE_SUBSCRIPTION_ACTOR
    return None


def _to_billing(actor: str, command: Command) -> Delivery:
    """Publish ``command`` to ``actor`` on ``billing``: ``duplicate`` when it was accepted before."""

    def answer(outcome: Outcome) -> web.Response:
        return web.json_response({"received": True, "duplicate": outcome.published != 1})

    return Delivery([(BILLING_QUEUE, actor, command)], answer, {"command_id": command.command_id})


def _nothing_to_publish(**body: Any) -> Delivery:
    """A signed event that moves nothing: acknowledged at once, so the provider does not retry it."""
    return Delivery([], lambda _: web.json_response({"received": True, "ignored": True, **body}))


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
    event_type = payload.get("type")
    if not isinstance(event_type, str):
        raise ValueError("the event has no type")
    return StripeEvent(
        command_id=f"stripe:{event_id}",
        event_id=event_id,
        event_type=event_type,
        created=0 if created is None else created,
        livemode=payload.get("livemode") is True,
        data_object=data_object,
    )


def _problem(exc: Exception) -> str:
    return (first_problem(exc, "event") if isinstance(exc, ValidationError) else str(exc))[:300]


def _stripe_verify(request: web.Request, body: bytes, header: str, secret: str) -> None:
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8"), header, secret, tolerance=STRIPE_TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(error=str(exc)) from None
    except ValueError:  # not UTF-8 (so not a signed Stripe body either)
        raise BadRequest("the body is not a JSON event") from None


def _stripe_delivery(request: web.Request, body: bytes) -> Delivery:
    """A Stripe event: payments and subscriptions to the billing workers, other events acknowledged.

    An event Stripe signed that the workers could not use is acknowledged as well (``invalid``
    says why): any other answer makes Stripe retry it for days.
    """
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
        return _nothing_to_publish(invalid=problem)
    actor = stripe_actor(command.event_type)
    if actor is None:
        log.debug("webhook.ignored", provider="stripe", event_type=command.event_type)
        return _nothing_to_publish()
    return _to_billing(actor, command)


STRIPE_REFUSAL = partial(BadRequest, code="bad_signature")  # a missing or a bad signature alike
STRIPE_SIGNATURE = Signature(
    STRIPE_SIGNATURE_HEADER,
    _stripe_verify,
    unsigned=STRIPE_REFUSAL,
    forged=STRIPE_REFUSAL,
    forged_message="the Stripe-Signature does not match this payload",
)
STRIPE = SignedWebhook("stripe", "stripe_webhook_secret", STRIPE_SIGNATURE, read_body, _stripe_delivery)
STRIPE_EVENT = RawBody("application/json", "A Stripe Event object")
billing_webhook_routes.post("/webhooks/stripe")(signed_webhook(STRIPE, STRIPE_EVENT, ACKNOWLEDGED, BadRequest))


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


def _lemonsqueezy_verify(request: web.Request, body: bytes, provided: str, secret: str) -> None:
    if not hmac_sha256_hex_ok(body, provided, secret):
        raise BadSignature()


def _lemonsqueezy_delivery(request: web.Request, body: bytes) -> Delivery:
    """A LemonSqueezy order event to the billing workers; other events acknowledged."""
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
        return _nothing_to_publish()
    return _to_billing(LEMONSQUEEZY_ORDER_ACTOR, command)


LEMONSQUEEZY_SIGNATURE = Signature(LEMONSQUEEZY_SIGNATURE_HEADER, _lemonsqueezy_verify, forged=Unauthorized)
LEMONSQUEEZY = SignedWebhook(
    "lemonsqueezy", "lemonsqueezy_webhook_secret", LEMONSQUEEZY_SIGNATURE, read_body, _lemonsqueezy_delivery
)
ORDER_EVENT = RawBody("application/json", "A LemonSqueezy event: meta (event_name, custom_data) and data")
billing_webhook_routes.post("/webhooks/lemonsqueezy")(
    signed_webhook(LEMONSQUEEZY, ORDER_EVENT, ACKNOWLEDGED, BadRequest)
)
