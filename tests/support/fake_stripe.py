"""A local Stripe REST API on 127.0.0.1 and a random port, for the real ``stripe`` library.

It speaks Stripe's wire protocol: form-encoded bodies with bracketed keys
(``line_items[0][price_data][currency]=usd``), ``Authorization: Bearer sk_…``, ``Idempotency-Key``
(a repeated key gets the first answer back, as Stripe does), JSON objects with ``id`` and
``object``, and errors as ``{"error": {"type": …, "message": …}}``.

Routes so far: ``POST /v1/checkout/sessions``. Add more with :meth:`FakeStripe.route`::

    fake.route("POST", "/v1/billing/meter_events", handler)   # handler(fake, request, params) -> (status, body)

It also builds the events Stripe would send about its objects (:meth:`completed_event`,
:meth:`refunded_event`), ready to be signed with tests.support.stripe_signing.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

Handler = Callable[["FakeStripe", web.Request, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
_KEY_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's bracketed form encoding back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        path = [head, *_KEY_PART.findall(key[len(head) :])]
        node: Any = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            nxt_is_index = not last and path[i + 1].isdigit()
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(None)
                if last:
                    node[index] = value
                else:
                    if node[index] is None:
                        node[index] = [] if nxt_is_index else {}
                    node = node[index]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if nxt_is_index else {})
    return root


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]
    status: int


@dataclass
class FakeStripe:
    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(12))
    requests: list[Recorded] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: list[tuple[int, str]] = field(default_factory=list)  # (status, error type) for the next requests
    port: int = 0
    _routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    _idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.route("POST", "/v1/checkout/sessions", FakeStripe._create_checkout_session)

    # --- lifecycle ---
    async def start(self) -> FakeStripe:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method.upper(), path)] = handler

    # --- the wire ---
    async def _dispatch(self, request: web.Request) -> web.Response:
        params = parse_form(await request.text()) if request.can_read_body else dict(request.query)
        headers = dict(request.headers)

        def answer(status: int, body: dict[str, Any]) -> web.Response:
            self.requests.append(Recorded(request.method, request.path, headers, params, status))
            return web.json_response(body, status=status, headers={"Request-Id": _id("req")})

        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return answer(401, _error("invalid_request_error", "Invalid API Key provided"))
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return answer(404, _error("invalid_request_error", f"Unrecognized request URL ({request.path})"))
        key = request.headers.get("Idempotency-Key")
        if key and key in self._idempotent:
            return answer(*self._idempotent[key])
        if self.fail_next:
            status, kind = self.fail_next.pop(0)
            return answer(status, _error(kind, "scripted failure"))
        status, body = await handler(self, request, params)
        if key and status < 500:
            self._idempotent[key] = (status, body)
        return answer(status, body)

    async def _create_checkout_session(self, request: web.Request, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for required in ("mode", "success_url"):
            if not p.get(required):
                return 400, _error("invalid_request_error", f"Missing required param: {required}.", required)
        items = p.get("line_items") or []
        amount = 0
        currency = None
        for item in items:
            price = item.get("price_data") or {}
            amount += int(price.get("unit_amount", 0)) * int(item.get("quantity", 1))
            currency = price.get("currency", currency)
        session_id = _id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": p["mode"],
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": amount,
            "amount_subtotal": amount,
            "currency": currency,
            "client_reference_id": p.get("client_reference_id"),
            "metadata": p.get("metadata") or {},
            "payment_intent": None,
            "success_url": p["success_url"],
            "cancel_url": p.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "livemode": False,
            "created": int(time.time()),
        }
        self.sessions[session_id] = session
        return 200, session

    # --- events Stripe would send ---
    def pay(self, session_id: str, *, payment_status: str = "paid") -> dict[str, Any]:
        """The customer paid: the session completes, with a PaymentIntent."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status=payment_status)
        session["payment_intent"] = session["payment_intent"] or _id("pi")
        return dict(session)

    def completed_event(self, session_id: str, *, payment_status: str = "paid", event_type: str | None = None) -> dict:
        return event(event_type or "checkout.session.completed", self.pay(session_id, payment_status=payment_status))

    def refunded_event(self, session_id: str, amount_refunded: int | None = None) -> dict:
        """``charge.refunded`` for the session's charge; ``amount_refunded`` is cumulative (default all)."""
        session = self.sessions[session_id]
        amount = session["amount_total"]
        refunded = amount if amount_refunded is None else amount_refunded
        charge = {
            "id": "ch_" + session["payment_intent"].removeprefix("pi_"),
            "object": "charge",
            "amount": amount,
            "amount_refunded": refunded,
            "refunded": refunded >= amount,
            "currency": session["currency"],
            "payment_intent": session["payment_intent"],
            "status": "succeeded",
            "metadata": session["metadata"],
        }
        return event("charge.refunded", charge)


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A Stripe Event envelope around ``obj``."""
    return {
        "id": event_id or _id("evt"),
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": obj},
    }


def _error(kind: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param:
        error["param"] = param
    return {"error": error}
