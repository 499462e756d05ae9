"""One handler for every signed provider webhook: secret → signature header → verify → parse → publish.

A provider is a :class:`SignedWebhook`, a declaration of what differs: the secret's setting, its
:class:`Signature` (the header, the check, the answers to a missing or a bad signature), and how
its body is read and parsed into a :class:`Delivery`. :func:`signed_webhook` does the steps every
provider shares, in this order:

1. no secret configured: 503 ``not_configured`` (``<SETTING> is not set``);
2. no signature header: the provider's ``unsigned`` answer, ``missing <header>`` (logged);
3. the body read, then verified: a bad signature is the provider's ``forged`` answer (logged);
4. the body parsed: a refusal is an :class:`~ingress.http.errors.HttpError` the parser raises;
5. the commands published once each (:func:`~ingress.webhooks.acceptance.accept_routed`): 503
   ``unavailable`` unless RabbitMQ confirmed them all, so the provider retries; else the
   delivery's own 2xx answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from aiohttp import web

from infra.publisher import PublishFailed
from ingress.http.api_docs import Answer, RawBody, SecurityScheme, documented
from ingress.http.errors import Forbidden, HttpError, Unauthorized, Unavailable
from ingress.state import APP_STATE
from ingress.webhooks.acceptance import Outcome, Routed, accept_routed

log = structlog.get_logger(__name__)

Body = TypeVar("Body")


def raw_body(max_bytes: int) -> Callable[[web.Request], Awaitable[bytes]]:
    """A reader of the raw body, up to ``max_bytes`` (over it: aiohttp's 413)."""

    async def read(request: web.Request) -> bytes:
        return await request.clone(client_max_size=max_bytes).read()

    return read


MAX_BODY_BYTES = 1024 * 1024
read_body = raw_body(MAX_BODY_BYTES)  # a provider's body, unless its webhook reads it otherwise


class BadSignature(Exception):
    """A signature that does not verify; ``log_fields`` go on the ``webhook.rejected`` line."""

    def __init__(self, **log_fields: Any) -> None:
        super().__init__("bad signature")
        self.log_fields = log_fields


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a verified body asks for: the commands to publish, and the 2xx once they are published.

    ``log_fields`` name the delivery on the ``webhook.not_accepted`` line when publishing fails.
    An event that moves nothing has no commands: its answer comes at once.
    """

    routed: list[Routed]
    answer: Callable[[Outcome], web.Response]
    log_fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Signature(Generic[Body]):
    """How a provider signs: its header, the check (raises BadSignature), and the answers to a
    request without the header (``unsigned``) and to a signature that does not verify (``forged``)."""

    header: str
    verify: Callable[[web.Request, Body, str, str], None]  # (request, body, signature, secret)
    unsigned: Callable[[str], HttpError] = Unauthorized
    forged: Callable[[str], HttpError] = Forbidden
    forged_message: str = "bad signature"


@dataclass(frozen=True, slots=True)
class SignedWebhook(Generic[Body]):
    """A provider's signed webhook, declared."""

    provider: str
    secret: str  # the Settings field of the signing secret (its env var, upper-cased)
    signature: Signature[Body]
    read: Callable[[web.Request], Awaitable[Body]]  # the body (read_body: the raw bytes), or an HttpError
    parse: Callable[[web.Request, Body], Delivery]  # a verified body's delivery, or an HttpError


def signed_webhook(
    spec: SignedWebhook[Any],
    body: RawBody,
    answers: Mapping[int, Answer],
    *errors: type[HttpError],
    media_type: str = "application/json",
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler of ``spec``, documented: its parser's docstring, the provider's ``body``,
    the ``answers`` of a delivery, and the ``errors`` its reader and parser raise besides those
    of every signed webhook (503, and the provider's answers to a missing or a forged signature)."""

    async def handler(request: web.Request) -> web.Response:
        structlog.contextvars.bind_contextvars(provider=spec.provider)  # for this request (log_context_middleware)
        state = request.app[APP_STATE]
        secret = getattr(state.settings, spec.secret).get_secret_value()
        if not secret:
            raise Unavailable(f"{spec.secret.upper()} is not set", code="not_configured")
        scheme = spec.signature
        signature = request.headers.get(scheme.header)
        if not signature:
            log.warning("webhook.rejected", provider=spec.provider, reason="missing_signature")
            raise scheme.unsigned(f"missing {scheme.header}")
        body = await spec.read(request)
        try:
            scheme.verify(request, body, signature, secret)
        except BadSignature as exc:
            log.warning("webhook.rejected", provider=spec.provider, reason="bad_signature", **exc.log_fields)
            raise scheme.forged(scheme.forged_message) from None
        delivery = spec.parse(request, body)
        try:
            outcome = await accept_routed(state, delivery.routed)
        except PublishFailed as exc:
            log.warning("webhook.not_accepted", provider=spec.provider, **delivery.log_fields, error=str(exc))
            raise Unavailable("the event could not be stored durably; retry later") from None
        return delivery.answer(outcome)

    handler.__name__ = f"{spec.provider}_webhook"
    handler.__doc__ = spec.parse.__doc__
    document = documented(answers, *_refusals(spec, errors), auth=(_security(spec),), body=body, media_type=media_type)
    return document(handler)


def _security(spec: SignedWebhook[Any]) -> SecurityScheme:
    """The signature header, as the OpenAPI security scheme ``<provider>Signature``."""
    header, secret = spec.signature.header, spec.secret.upper()
    return SecurityScheme(
        f"{spec.provider}Signature",
        {"type": "apiKey", "in": "header", "name": header, "description": f"The signature, checked with {secret}"},
    )


def _refusals(spec: SignedWebhook[Any], errors: tuple[type[HttpError], ...]) -> list[type[HttpError]]:
    """Every signed webhook's refusals (503, the answers to a missing or a forged signature), then ``errors``."""
    signature = spec.signature
    return list(dict.fromkeys((Unavailable, type(signature.unsigned("")), type(signature.forged("")), *errors)))


def hmac_sha256_hex_ok(body: bytes, provided: str, secret: str) -> bool:
    """``provided`` is the hex HMAC-SHA256 of ``body`` under ``secret``, compared in constant time."""
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), provided.strip().lower().encode("ascii", "replace"))
