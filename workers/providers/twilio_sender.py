"""Twilio (SMS and WhatsApp) through the ``twilio`` library's async client.

``POST {TWILIO_API_BASE_URL}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded, basic
auth. The library makes the request and parses the answer; this adapter only sets it up (our
shared aiohttp session, our base URL, no library retries) and translates its errors.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from domain.channels import twilio_address
from workers.providers import (
    OutboundMessage,
    ProviderRejected,
    ProviderRetryable,
    network_error,
    parse_retry_after,
    retryable_status,
)

# The library raises TwilioRestException without the response headers, so the last response of the
# current task is kept here to read Retry-After. Each send runs in its own task: no cross-talk.
_last_response: contextvars.ContextVar[Response | None] = contextvars.ContextVar("twilio_last_response", default=None)


# The library logs every request and response (URL, form headers, body) at INFO: too chatty for a
# hot path, and it carries phone numbers. Our client logs through this logger, quiet below WARNING.
_library_log = logging.getLogger("workers.providers.twilio_http")
_library_log.setLevel(logging.WARNING)


class _HttpClient(AsyncTwilioHttpClient):
    """The library's aiohttp client on our shared session, remembering each response for its task."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        # pool_connections=False: no session of its own; max_retries=None: no aiohttp_retry wrapper.
        super().__init__(pool_connections=False, max_retries=None, logger=_library_log)
        self.session = session

    async def request(self, method: str, url: str, **kwargs: Any) -> Response:
        auth = kwargs.pop("auth", None)
        if auth is not None:  # as a header: aiohttp deprecates the BasicAuth object the library would make
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Basic {token}"}
        response = await super().request(method, url, **kwargs)
        _last_response.set(response)
        return response

    async def close(self) -> None:
        """The session is shared and closed by its owner."""


class TwilioSender:
    def __init__(
        self, session: aiohttp.ClientSession, *, account_sid: str, auth_token: str, base_url: str, status_callback: str
    ) -> None:
        self._configured = bool(account_sid and auth_token)
        self._status_callback = status_callback
        self._client = Client(account_sid or None, auth_token or None, http_client=_HttpClient(session))
        # Our settings are the only configuration: no TWILIO_EDGE/TWILIO_REGION host rewriting.
        self._client.edge = None
        self._client.region = None
        self._client.api.base_url = base_url.rstrip("/")

    async def send(self, message: OutboundMessage) -> str:
        if not self._configured:
            raise ProviderRejected("not_configured", "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set")
        _last_response.set(None)
        try:
            created = await self._client.messages.create_async(
                to=twilio_address(message.channel, message.contact),
                from_=twilio_address(message.channel, message.address),
                body=message.body,
                status_callback=self._status_callback,
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise self._translate(exc) from None
        except aiohttp.ClientError as exc:
            raise network_error(exc) from None
        except (TwilioException, json.JSONDecodeError) as exc:
            # A 2xx we cannot read: it was probably sent, so another attempt could duplicate it.
            raise ProviderRejected("bad_response", repr(exc)[:500]) from None
        if not created.sid:
            raise ProviderRejected("bad_response", "Twilio answered without a message sid")
        return created.sid

    @staticmethod
    def _translate(exc: TwilioRestException | TwilioServiceException) -> ProviderRetryable | ProviderRejected:
        status = int(exc.status or 0)
        if isinstance(exc, TwilioServiceException):
            text = exc.detail or exc.title
        else:
            text = str(exc.msg).removeprefix("Unable to create record: ")
        code = str(exc.code or f"http_{status}")
        if retryable_status(status):
            response = _last_response.get()
            headers = (response.headers if response is not None else None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            return ProviderRetryable(code, text, retry_after)
        return ProviderRejected(code, text)
