"""Provider webhooks (Twilio, Meta): verify the signature, dedupe, publish, answer.

Ingress stays thin: no database on this path. An event is acknowledged with a 2xx only once
RabbitMQ confirmed a persistent copy of its command; otherwise the answer is 503 and the
provider retries. Each accepted command_id is remembered in Redis (``<prefix>:webhook:<id>``),
written only after the confirm, so a provider's redelivery is answered without publishing
again, and a delivery that failed is never mistaken for one that succeeded. Two concurrent
copies of one event may both be published; the worker's inbox dedupes those.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

import structlog
from aiohttp import web
from redis.exceptions import RedisError
from twilio.request_validator import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, RequestValidator
from twilio.request_validator import get_signature_algorithm as twilio_signature_algorithm

from infra import json_limits
from infra.json_limits import JsonLimitError
from infra.publisher import PublishFailed
from ingress.correlation import bind_command
from ingress.http.errors import (
    BadRequest,
    Forbidden,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    json_refused,
)
from ingress.http.http_api import json_body_limits
from ingress.state import APP_STATE, IngressState
from schemas.base import Command
from schemas.queues import CHAT_QUEUE
from schemas.webhooks import BadPayload, WebhookCommand, actor_for, parse_meta_delivery, parse_twilio_form

log = structlog.get_logger(__name__)

webhook_routes = web.RouteTableDef()

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
META_SIGNATURE_HEADER = "X-Hub-Signature-256"
META_MAX_BODY_BYTES = 3 * 1024 * 1024  # Meta batches updates; its payloads can reach a few MB
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
REDIS_TIMEOUT_S = 0.5  # dedupe is an optimisation: a slow Redis must not hold the provider


@dataclass(frozen=True, slots=True)
class Outcome:
    published: int
    duplicates: int


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _already_accepted(state: IngressState, keys: list[str]) -> list[bool]:
    """Which command ids were accepted before. If Redis cannot say, treat all as new: the worker's
    inbox dedupes whatever we publish twice, while a lost event could never be recovered."""
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            values = await state.redis.mget(keys)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("webhook.dedupe_unavailable", error=repr(exc), commands=len(keys))
        return [False] * len(keys)
    return [value is not None for value in values]


async def _publish_and_mark(state: IngressState, queue: str, actor: str, command: Command, key: str) -> None:
    bind_command(command)  # this runs as a task of its own (gather): the binding ends with it
    await state.publisher.publish(queue, actor, command)
    # Confirmed: only now may a redelivery of this event be answered without publishing.
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            await state.redis.set(key, "1", ex=state.settings.webhook_dedupe_ttl_s)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("webhook.dedupe_mark_failed", command_id=command.command_id, error=repr(exc))


async def accept_routed(state: IngressState, routed: list[tuple[str, str, Command]]) -> Outcome:
    """Publish every (queue, actor, command) not accepted before; raise PublishFailed unless all
    were confirmed.

    The publishes run concurrently and all finish (confirmed or failed) before this returns, so
    the ones that were confirmed are marked and a retry of the whole delivery skips them.
    """
    unique: dict[str, tuple[str, str, Command]] = {}
    for queue, actor, command in routed:
        unique.setdefault(command.command_id, (queue, actor, command))
    in_delivery_duplicates = len(routed) - len(unique)
    if not unique:
        return Outcome(0, in_delivery_duplicates)
    keys = [state.settings.key("webhook", command_id) for command_id in unique]
    seen = await _already_accepted(state, keys)
    fresh = [(item, key) for item, key, was_seen in zip(unique.values(), keys, seen, strict=True) if not was_seen]
    for command_id, was_seen in zip(unique, seen, strict=True):
        if was_seen:
            log.info("webhook.duplicate", command_id=command_id)  # a provider's redelivery, answered as before
    results = await asyncio.gather(
        *(_publish_and_mark(state, *item, key) for item, key in fresh), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    for error in failed:
        if not isinstance(error, PublishFailed):
            raise error
    if failed:
        raise PublishFailed(f"{len(failed)} of {len(fresh)} commands not confirmed")
    return Outcome(len(fresh), in_delivery_duplicates + len(unique) - len(fresh))


async def accept(state: IngressState, commands: list[WebhookCommand]) -> Outcome:
    """Channel webhooks: every command to its actor on the chat queue (see :func:`accept_routed`)."""
    return await accept_routed(state, [(CHAT_QUEUE, actor_for(command), command) for command in commands])


def hmac_sha256_hex_ok(body: bytes, provided: str, secret: str) -> bool:
    """``provided`` is the hex HMAC-SHA256 of ``body`` under ``secret``, compared in constant time."""
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), provided.strip().lower().encode("ascii", "replace"))


def unavailable() -> Unavailable:
    return Unavailable("the event could not be stored durably; retry later")


# --- Twilio ---------------------------------------------------------------------------------------


@webhook_routes.post("/webhooks/twilio")
async def twilio_webhook(request: web.Request) -> web.Response:
    structlog.contextvars.bind_contextvars(provider="twilio")  # for this request (log_context_middleware)
    state = request.app[APP_STATE]
    settings = state.settings
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise Unavailable("TWILIO_AUTH_TOKEN is not set", code="not_configured")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        log.warning("webhook.rejected", provider="twilio", reason="missing_signature")
        raise Forbidden(f"missing {SIGNATURE_HEADER}")
    if request.content_type != FORM_CONTENT_TYPE:
        raise UnsupportedMediaType(f"expected {FORM_CONTENT_TYPE}")
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    if len(fields) != len(form):
        raise BadRequest("unexpected file fields")
    # Twilio signs the URL it called: ours as the world sees it, not as the proxy forwards it.
    url = settings.public_base_url.rstrip("/") + request.path_qs
    algorithm = twilio_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not RequestValidator(token).validate(url, form, signature, algorithm):
        log.warning("webhook.rejected", provider="twilio", reason="bad_signature", url=url)
        raise Forbidden("bad signature")
    try:
        command = parse_twilio_form(fields, _now_ms())
    except BadPayload as exc:
        log.warning("webhook.malformed", provider="twilio", error=str(exc))
        raise BadRequest(str(exc)) from None
    try:
        outcome = await accept(state, [command])
    except PublishFailed as exc:
        log.warning("webhook.not_accepted", provider="twilio", command_id=command.command_id, error=str(exc))
        raise unavailable() from None
    log.debug("webhook.accepted", provider="twilio", command_id=command.command_id, duplicate=bool(outcome.duplicates))
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


# --- Meta (WhatsApp Cloud API, Instagram) --------------------------------------------------------


def _secret_matches(provided: str | None, configured: str) -> bool:
    """Constant-time equality; an empty configured secret never matches."""
    if not configured or provided is None:
        return False
    return hmac.compare_digest(provided.encode("utf-8", "replace"), configured.encode("utf-8"))


@webhook_routes.get("/webhooks/meta")
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


def _meta_signature_ok(body: bytes, header: str, secret: str) -> bool:
    scheme, _, provided = header.partition("=")
    return scheme.strip().lower() == "sha256" and bool(provided) and hmac_sha256_hex_ok(body, provided, secret)


@webhook_routes.post("/webhooks/meta")
async def meta_webhook(request: web.Request) -> web.Response:
    structlog.contextvars.bind_contextvars(provider="meta")  # for this request (log_context_middleware)
    state = request.app[APP_STATE]
    secret = state.settings.meta_app_secret.get_secret_value()
    if not secret:
        raise Unavailable("META_APP_SECRET is not set", code="not_configured")
    header = request.headers.get(META_SIGNATURE_HEADER)
    if not header:
        log.warning("webhook.rejected", provider="meta", reason="missing_signature")
        raise Unauthorized(f"missing {META_SIGNATURE_HEADER}")
    body = await request.clone(client_max_size=META_MAX_BODY_BYTES).read()
    if not _meta_signature_ok(body, header, secret):
        log.warning("webhook.rejected", provider="meta", reason="bad_signature")
        raise Forbidden("bad signature")
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
    try:
        outcome = await accept(state, parsed.commands)
    except PublishFailed as exc:
        log.warning("webhook.not_accepted", provider="meta", commands=len(parsed.commands), error=str(exc))
        raise unavailable() from None
    log.debug("webhook.accepted", provider="meta", published=outcome.published, duplicates=outcome.duplicates)
    return web.json_response(
        {"received": outcome.published, "duplicates": outcome.duplicates, "skipped": len(parsed.skipped)}
    )
