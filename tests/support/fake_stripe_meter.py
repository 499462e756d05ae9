"""A local Stripe API for Billing meter events (``POST /v1/billing/meter_events``), on loopback.

It speaks Stripe's wire protocol to the real ``stripe`` library: form-encoded bodies, Bearer
authentication, JSON errors, and ``Idempotency-Key`` replays (the same key gets the first answer
back and records nothing again). Like Stripe, it refuses a second event with an identifier it
already recorded. Tests can make it fail the next requests, or record an event and then fail
(the answer lost on the way back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class MeterEvent:
    event_name: str
    identifier: str
    customer_id: str
    value: int
    timestamp: int


@dataclass
class FakeStripeMeter:
    api_key: str
    events: list[MeterEvent] = field(default_factory=list)
    requests: int = 0
    _idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)
    _fail_next: int = 0
    _lose_next: int = 0
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int = 1) -> None:
        """The next ``count`` requests get a 500 and record nothing."""
        self._fail_next += count

    def lose_next(self, count: int = 1) -> None:
        """The next ``count`` requests are recorded, but the client gets a 500 (a lost answer)."""
        self._lose_next += count

    def by_identifier(self) -> dict[str, MeterEvent]:
        return {e.identifier: e for e in self.events}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/billing/meter_events", self._create)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, message: str, code: str | None = None, kind: str = "invalid_request_error") -> web.Response:
        return web.json_response({"error": {"type": kind, "message": message, "code": code}}, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "Invalid API Key provided.", kind="authentication_error")
        if self._fail_next:
            self._fail_next -= 1
            return self._error(500, "An unknown error occurred", kind="api_error")
        key = request.headers.get("Idempotency-Key")
        if key and key in self._idempotent:
            return web.json_response(self._idempotent[key], headers={"Idempotent-Replayed": "true"})
        form = await request.post()
        missing = [k for k in ("event_name", "payload[stripe_customer_id]", "payload[value]") if not form.get(k)]
        if missing:
            return self._error(400, f"Missing required param: {missing[0]}.", "parameter_missing")
        identifier = str(form.get("identifier") or f"gen-{time.time_ns()}")
        if identifier in self.by_identifier():
            return self._error(400, f"An event with identifier {identifier} already exists.", "resource_already_exists")
        try:
            value = int(str(form["payload[value]"]))
        except ValueError:
            return self._error(400, "payload[value] must be an integer.", "parameter_invalid_integer")
        event = MeterEvent(
            str(form["event_name"]),
            identifier,
            str(form["payload[stripe_customer_id]"]),
            value,
            int(str(form.get("timestamp") or int(time.time()))),
        )
        self.events.append(event)
        body = {
            "object": "billing.meter_event",
            "created": int(time.time()),
            "event_name": event.event_name,
            "identifier": identifier,
            "livemode": False,
            "timestamp": event.timestamp,
            "payload": {"stripe_customer_id": event.customer_id, "value": str(value)},
        }
        if key:
            self._idempotent[key] = body
        if self._lose_next:
            self._lose_next -= 1
            return self._error(500, "An unknown error occurred", kind="api_error")
        return web.json_response(body)
