"""Local stand-ins for Twilio's REST API and Meta's Graph API, on 127.0.0.1 and a random port.

They speak the wire protocols closely enough for the real ``twilio`` library and our Meta adapter:

- Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, basic auth;
  ``201`` with a Message resource (``sid`` ``SM…``, ``status`` ``queued``, …), errors as
  ``{"code": 21211, "message": …, "more_info": …, "status": 400}``.
- Meta: ``POST /{version}/{phone_number_id or ig account id}/messages``, JSON, Bearer token;
  WhatsApp answers ``{"messaging_product": "whatsapp", "contacts": […], "messages": [{"id": "wamid.…"}]}``,
  Instagram ``{"recipient_id": …, "message_id": "m_…"}``, errors as
  ``{"error": {"message": …, "type": "OAuthException", "code": 131026, "fbtrace_id": …}}``.

Both record every request (even refused ones), answer after a configurable ``delay_s``, count
requests in flight (``max_in_flight``), and can be scripted to answer failures first::

    twilio.script(Reply.too_many(retry_after=1), Reply.server_error())   # the next two requests
    meta.script(Reply.meta_error(400, 131026), to="15550001111")          # only for this recipient

Start them on the running event loop (``await fake.start()``); a worker process reaches them over
loopback, so never block that loop while a worker is sending (use ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Reply:
    """A scripted answer. ``code`` is the provider's error code in the body."""

    status: int
    code: int | None = None
    message: str = ""
    retry_after: str | None = None
    delay_s: float | None = None  # overrides the server's delay for this answer

    @classmethod
    def too_many(cls, retry_after: float | str | None = None, code: int | None = None) -> Reply:
        return cls(429, code, "Too Many Requests", None if retry_after is None else str(retry_after))

    @classmethod
    def server_error(cls, status: int = 500, code: int | None = None) -> Reply:
        return cls(status, code, "Internal Server Error")

    @classmethod
    def twilio_error(cls, status: int, code: int, message: str) -> Reply:
        return cls(status, code, message)

    @classmethod
    def meta_error(cls, status: int, code: int, message: str | None = None) -> Reply:
        return cls(status, code, message or f"(#{code}) Message failed to send")


@dataclass
class Recorded:
    """One request as the fake saw it. ``key`` is the recipient, ``text`` the message body."""

    path: str
    headers: dict[str, str]
    fields: dict[str, Any]
    key: str | None
    text: str | None
    started: float
    finished: float | None = None
    status: int | None = None
    provider_id: str | None = None  # the id answered, when the request was accepted


@dataclass
class _FakeServer:
    delay_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _script: deque[Reply] = field(default_factory=deque)
    _script_for: dict[str, deque[Reply]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0

    # --- lifecycle ---
    def _routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> _FakeServer:
        app = web.Application()
        app.add_routes(self._routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting and inspection ---
    def script(self, *replies: Reply, to: str | None = None) -> None:
        """Answer the next requests (for recipient ``to`` only, if given) with these, in order."""
        (self._script_for.setdefault(to, deque()) if to is not None else self._script).extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()
        self._script_for.clear()
        self.max_in_flight = 0

    def count(self, *, text: str | None = None, key: str | None = None) -> int:
        return sum(1 for r in self.requests if (text is None or r.text == text) and (key is None or r.key == key))

    def counts_by_text(self) -> Counter[str | None]:
        return Counter(r.text for r in self.requests)

    def accepted(self) -> list[Recorded]:
        return [r for r in self.requests if r.provider_id is not None]

    def _next_reply(self, key: str | None) -> Reply | None:
        queue = self._script_for.get(key) if key is not None else None
        if queue:
            return queue.popleft()
        return self._script.popleft() if self._script else None

    def _record(self, request: web.Request, key: str | None, text: str | None, fields: dict) -> Recorded:
        rec = Recorded(request.path, dict(request.headers), fields, key, text, time.monotonic())
        self.requests.append(rec)
        return rec

    async def _answer(self, rec: Recorded, reply: Reply | None, make) -> web.Response:
        """Count the request in flight while waiting the reply delay, then answer with ``make()``."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = reply.delay_s if reply is not None and reply.delay_s is not None else self.delay_s
            if delay:
                await asyncio.sleep(delay)
            response = make()
        finally:
            self.in_flight -= 1
            rec.finished = time.monotonic()
        rec.status = response.status
        return response


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


@dataclass
class FakeTwilio(_FakeServer):
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-twilio-token"

    def _routes(self) -> list[web.RouteDef]:
        return [web.post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._create_message)]

    @staticmethod
    def _error(status: int, code: int, message: str, retry_after: str | None = None) -> web.Response:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return web.json_response(body, status=status, headers=headers)

    async def _create_message(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        to, body = form.get("To"), form.get("Body")
        rec = self._record(request, to, body, form)
        reply = self._next_reply(to)
        return await self._answer(rec, reply, lambda: self._respond(request, rec, reply, form))

    def _respond(self, request: web.Request, rec: Recorded, reply: Reply | None, form: dict) -> web.Response:
        path_sid = request.match_info["account_sid"]
        if _basic_auth(request.headers.get("Authorization")) != (self.account_sid, self.auth_token) or (
            path_sid != self.account_sid
        ):
            return self._error(401, 20003, "Authenticate")
        if reply is not None:
            code = reply.code or {429: 20429, 500: 20500, 503: 20503}.get(reply.status, reply.status)
            return self._error(reply.status, code, reply.message, reply.retry_after)
        to, from_, body = form.get("To"), form.get("From"), form.get("Body")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return self._error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        whatsapp = to.startswith("whatsapp:")
        if not E164.match(to.removeprefix("whatsapp:")):
            return self._error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if whatsapp != from_.startswith("whatsapp:") or not E164.match(from_.removeprefix("whatsapp:")):
            return self._error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        sid = "SM" + secrets.token_hex(16)
        rec.provider_id = sid
        now = formatdate(usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        return web.json_response(resource, status=201)


@dataclass
class FakeMeta(_FakeServer):
    access_token: str = "fake-meta-token"

    def _routes(self) -> list[web.RouteDef]:
        return [web.post("/{version}/{sender_id}/messages", self._send)]

    @staticmethod
    def _error(status: int, code: int, message: str, retry_after: str | None = None, kind: str = "OAuthException"):
        body = {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": secrets.token_urlsafe(12)}}
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return web.json_response(body, status=status, headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        if "messaging_product" in payload:
            key, text = payload.get("to"), (payload.get("text") or {}).get("body")
        else:
            key, text = (payload.get("recipient") or {}).get("id"), (payload.get("message") or {}).get("text")
        rec = self._record(request, key, text, payload)
        reply = self._next_reply(key)
        return await self._answer(rec, reply, lambda: self._respond(request, rec, reply, payload))

    def _respond(self, request: web.Request, rec: Recorded, reply: Reply | None, payload: dict) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if reply is not None:
            code = reply.code or {429: 130429, 500: 131000, 503: 131016}.get(reply.status, 1)
            return self._error(reply.status, code, reply.message, reply.retry_after)
        if "messaging_product" in payload:
            if payload.get("messaging_product") != "whatsapp":
                return self._error(400, 100, "(#100) Invalid parameter")
            to, body = payload.get("to"), (payload.get("text") or {}).get("body")
            if payload.get("type") != "text" or not to or not body:
                return self._error(400, 100, "(#100) The parameter text['body'] is required.")
            wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
            rec.provider_id = wamid
            return web.json_response(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                    "messages": [{"id": wamid}],
                }
            )
        recipient, text = (payload.get("recipient") or {}).get("id"), (payload.get("message") or {}).get("text")
        if not recipient:
            return self._error(400, 100, "(#100) The parameter recipient is required")
        if not text:
            return self._error(400, 100, "(#100) Param message must be non-empty")
        mid = "m_" + secrets.token_urlsafe(40)
        rec.provider_id = mid
        return web.json_response({"recipient_id": recipient, "message_id": mid})
