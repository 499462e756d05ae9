"""Channel webhooks (Twilio, Meta): each a :class:`~ingress.webhooks.signed.SignedWebhook`, whose
commands go to their actors on the chat queue (publishing and dedupe: ingress.webhooks.acceptance).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import structlog
from aiohttp import web
from multidict import MultiDictProxy
from twilio.request_validator import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, RequestValidator
from twilio.request_validator import get_signature_algorithm as twilio_signature_algorithm

from infra import json_limits
from infra.json_limits import JsonLimitError
from ingress.http.api_docs import Query, RawBody, documented
from ingress.http.errors import BadRequest, Forbidden, UnsupportedMediaType, json_refused
from ingress.http.http_api import json_body_limits
from ingress.state import APP_STATE
from ingress.webhooks.acceptance import Outcome, Routed
from ingress.webhooks.signed import (
    BadSignature,
    Delivery,
    Signature,
    SignedWebhook,
    hmac_sha256_hex_ok,
    raw_body,
    signed_webhook,
)
from schemas.queues import CHAT_QUEUE
from schemas.webhooks import BadPayload, WebhookCommand, actor_for, parse_meta_delivery, parse_twilio_form

log = structlog.get_logger(__name__)

webhook_routes = web.RouteTableDef()

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
META_SIGNATURE_HEADER = "X-Hub-Signature-256"
META_MAX_BODY_BYTES = 3 * 1024 * 1024  # Meta batches updates; its payloads can reach a few MB
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
META_HUB = (
    Query("hub.mode", "subscribe", required=True),
    Query("hub.challenge", "What to echo", required=True),
    Query("hub.verify_token", "META_VERIFY_TOKEN", required=True),
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def chat_routed(commands: list[WebhookCommand]) -> list[Routed]:
    """Every command to its actor on the chat queue."""
    return [(CHAT_QUEUE, actor_for(command), command) for command in commands]


# --- Twilio ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwilioForm:
    form: MultiDictProxy[str | bytes | bytearray | web.FileField]  # what Twilio signed
    fields: dict[str, str]


async def _twilio_form(request: web.Request) -> TwilioForm:
    if request.content_type != FORM_CONTENT_TYPE:
        raise UnsupportedMediaType(f"expected {FORM_CONTENT_TYPE}")
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if len(fields) != len(form):
        raise BadRequest("unexpected file fields")
    return TwilioForm(form, fields)


def _twilio_verify(request: web.Request, body: TwilioForm, signature: str, token: str) -> None:
    # Twilio signs the URL it called: ours as the world sees it, not as the proxy forwards it.
    url = request.app[APP_STATE].settings.public_base_url.rstrip("/") + request.path_qs
    algorithm = twilio_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not RequestValidator(token).validate(url, body.form, signature, algorithm):
        raise BadSignature(url=url)


def _twilio_delivery(request: web.Request, body: TwilioForm) -> Delivery:
    """A Twilio message or status callback: its command to the chat workers."""
    try:
        command = parse_twilio_form(body.fields, _now_ms())
    except BadPayload as exc:
        log.warning("webhook.malformed", provider="twilio", error=str(exc))
        raise BadRequest(str(exc)) from None

    def answer(outcome: Outcome) -> web.Response:
        log.debug(
            "webhook.accepted", provider="twilio", command_id=command.command_id, duplicate=bool(outcome.duplicates)
        )
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    return Delivery(chat_routed([command]), answer, {"command_id": command.command_id})


TWILIO_SIGNATURE = Signature(SIGNATURE_HEADER, _twilio_verify, unsigned=Forbidden)
TWILIO = SignedWebhook("twilio", "twilio_auth_token", TWILIO_SIGNATURE, _twilio_form, _twilio_delivery)
TWILIO_FORM = RawBody(FORM_CONTENT_TYPE, "Twilio's parameters: From, To, Body, MessageSid or MessageStatus, ...")
webhook_routes.post("/webhooks/twilio")(
    signed_webhook(TWILIO, TWILIO_FORM, {200: "Empty TwiML"}, BadRequest, UnsupportedMediaType, media_type="text/xml")
)


# --- Meta (WhatsApp Cloud API, Instagram) --------------------------------------------------------


def _secret_matches(provided: str | None, configured: str) -> bool:
    """Constant-time equality; an empty configured secret never matches."""
    if not configured or provided is None:
        return False
    return hmac.compare_digest(provided.encode("utf-8", "replace"), configured.encode("utf-8"))


@webhook_routes.get("/webhooks/meta")
@documented({200: "hub.challenge, echoed"}, Forbidden, query=META_HUB, media_type="text/plain")
async def meta_verify(request: web.Request) -> web.Response:
    """The subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` is ours."""
    settings = request.app[APP_STATE].settings
    query = request.query
    challenge = query.get("hub.challenge")
    if (
        query.get("hub.mode") == "subscribe"
        and challenge is not None
        and _secret_matches(query.get("hub.verify_token"), settings.meta_verify_token.get_secret_value())
    ):
        return web.Response(text=challenge, content_type="text/plain")
    log.warning("webhook.rejected", provider="meta", reason="bad_verify_token", mode=query.get("hub.mode"))
    raise Forbidden("verification failed")


def _meta_verify(request: web.Request, body: bytes, header: str, secret: str) -> None:
    scheme, _, provided = header.partition("=")
    if not (scheme.strip().lower() == "sha256" and provided and hmac_sha256_hex_ok(body, provided, secret)):
        raise BadSignature()


def _meta_delivery(request: web.Request, body: bytes) -> Delivery:
    """WhatsApp Cloud API and Instagram updates: each message or status to the chat workers."""
    try:
        parsed = parse_meta_delivery(json_limits.loads(body, json_body_limits(request)), _now_ms())
    except JsonLimitError as exc:
        log.warning("webhook.malformed", provider="meta", error=str(exc))
        raise json_refused(exc) from None
    except ValueError as exc:  # bad JSON, bad UTF-8, or not an object (BadPayload)
        log.warning("webhook.malformed", provider="meta", error=str(exc))
        raise BadRequest("the body is not a JSON object") from None
    for skipped in parsed.skipped:
        log.info("webhook.skipped", provider="meta", reason=skipped.reason, detail=skipped.detail)

    def answer(outcome: Outcome) -> web.Response:
        log.debug("webhook.accepted", provider="meta", published=outcome.published, duplicates=outcome.duplicates)
        return web.json_response(
            {"received": outcome.published, "duplicates": outcome.duplicates, "skipped": len(parsed.skipped)}
        )

    return Delivery(chat_routed(parsed.commands), answer, {"commands": len(parsed.commands)})


META_SIGNATURE = Signature(META_SIGNATURE_HEADER, _meta_verify)  # missing: 401, forged: 403
META = SignedWebhook("meta", "meta_app_secret", META_SIGNATURE, raw_body(META_MAX_BODY_BYTES), _meta_delivery)
META_BODY = RawBody("application/json", "Meta's delivery: object, and entry[] with changes[] or messaging[]")
META_ANSWER = {200: "Counts: received (published), duplicates (accepted before) and skipped"}
webhook_routes.post("/webhooks/meta")(signed_webhook(META, META_BODY, META_ANSWER, BadRequest))
