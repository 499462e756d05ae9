"""Credit packs: list them, and start a Stripe Checkout Session for one (user JWT)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import stripe
import structlog
from aiohttp import web

from infra.settings import Settings
from ingress import auth
from ingress.http.api_docs import JWT, documented
from ingress.http.errors import BadGateway, BadRequest, Unauthorized, Unavailable
from ingress.http.http_api import bearer_identity, parse_body
from ingress.state import APP_STATE
from schemas.purchases import CheckoutRequest

log = structlog.get_logger(__name__)

billing_routes = web.RouteTableDef()
CHECKOUT = {201: "The Checkout Session (sessionId, url to send the buyer to), the pack and its credits"}
STRIPE_CLIENT = web.AppKey("stripe_client", stripe.StripeClient)


def stripe_client_context(
    settings: Settings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context owning the node's Stripe client (async, over aiohttp); none without a key."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        key = settings.stripe_secret_key.get_secret_value()
        if not key:
            yield
            return
        http_client = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=settings.stripe_timeout_s))
        app[STRIPE_CLIENT] = stripe.StripeClient(
            key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=http_client,
            max_network_retries=2,  # the library retries with an idempotency key, so never twice
        )
        yield
        await http_client.close_async()

    return context


@billing_routes.get("/api/billing/packs")
@documented({200: "Each pack: id, credits, amount (minor units), currency"})
async def list_packs(request: web.Request) -> web.Response:
    """The credit packs on sale."""
    packs = request.app[APP_STATE].settings.credit_pack_list.packs
    return web.json_response(
        {"packs": [{"id": p.pack_id, "credits": p.credits, "amount": p.amount, "currency": p.currency} for p in packs]}
    )


@billing_routes.post("/api/billing/checkout")
@documented(CHECKOUT, BadRequest, Unauthorized, BadGateway, Unavailable, auth=JWT, body=CheckoutRequest)
async def checkout(request: web.Request) -> web.Response:
    """Start a Stripe Checkout Session for a credit pack; the credits land when Stripe says it was paid."""
    settings = request.app[APP_STATE].settings
    try:
        identity = bearer_identity(request)
    except auth.Unauthorized as exc:
        raise Unauthorized(f"a valid Bearer token is required ({exc})") from None
    body: CheckoutRequest = await parse_body(request, CheckoutRequest)
    pack = settings.credit_pack_list.get(body.pack)
    if pack is None:
        known = ", ".join(p.pack_id for p in settings.credit_pack_list.packs)
        raise BadRequest(f"no credit pack {body.pack!r}; packs: {known}", code="unknown_pack")
    client = request.app.get(STRIPE_CLIENT)
    if client is None:
        raise Unavailable("STRIPE_SECRET_KEY is not set", code="not_configured")
    metadata = {"user_id": identity.user_id, "pack": pack.pack_id, "credits": str(pack.credits)}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": pack.currency,
                    "unit_amount": pack.amount,
                    "product_data": {"name": f"{pack.credits} credits"},
                },
            }
        ],
        "success_url": settings.checkout_success_url,
        "cancel_url": settings.checkout_cancel_url,
        "client_reference_id": identity.user_id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
    }
    try:
        session = await client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        log.warning("billing.checkout_failed", user_id=identity.user_id, pack=pack.pack_id, error=str(exc))
        raise BadGateway("Stripe could not create the checkout session; retry", code="payment_provider_error") from None
    log.info("billing.checkout_created", user_id=identity.user_id, pack=pack.pack_id, session_id=session.id)
    return web.json_response(
        {"sessionId": session.id, "url": session.url, "pack": pack.pack_id, "credits": pack.credits}, status=201
    )
