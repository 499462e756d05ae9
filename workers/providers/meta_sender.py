"""Meta Graph API: WhatsApp Cloud API and Instagram messaging, over the shared aiohttp session.

Both are ``POST {META_GRAPH_URL}/{META_GRAPH_VERSION}/{address}/messages`` with a Bearer token;
``address`` is the WhatsApp phone_number_id or the Instagram account id that sends.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from domain.channels import Channel
from workers.providers import (
    OutboundMessage,
    ProviderRejected,
    ProviderRetryable,
    network_error,
    parse_retry_after,
    retryable_status,
)

# Graph error codes that mean "not now" rather than "never", whatever the HTTP status says
# (Meta answers several throttling errors with 400): unknown/service errors, app, user, page and
# business rate limits, Cloud API throughput, spam and pair rate limits, temporary unavailability.
TRANSIENT_CODES = frozenset(
    {1, 2, 4, 17, 32, 341, 613, 80002, 80006, 80007, 130429, 131000, 131016, 131048, 131056, 133004}
)


def payload(message: OutboundMessage) -> dict[str, Any]:
    if message.channel is Channel.META_WHATSAPP:
        return {"messaging_product": "whatsapp", "to": message.contact, "type": "text", "text": {"body": message.body}}
    if message.channel is Channel.INSTAGRAM:
        return {"recipient": {"id": message.contact}, "message": {"text": message.body}}
    raise ProviderRejected("unsupported_channel", f"Meta does not send on {message.channel}")


def provider_id(channel: Channel, answer: Any) -> str | None:
    try:
        if channel is Channel.META_WHATSAPP:
            return answer["messages"][0]["id"] or None
        return answer["message_id"] or None
    except (KeyError, IndexError, TypeError):
        return None


class MetaSender:
    def __init__(
        self, session: aiohttp.ClientSession, *, graph_url: str, graph_version: str, access_token: str
    ) -> None:
        self._session = session
        self._base = f"{graph_url.rstrip('/')}/{graph_version.strip('/')}"
        self._token = access_token

    async def send(self, message: OutboundMessage) -> str:
        if not self._token:
            raise ProviderRejected("not_configured", "META_ACCESS_TOKEN is not set")
        body = payload(message)
        url = f"{self._base}/{message.address}/messages"
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.post(url, json=body, headers=headers) as resp:
                status, retry_after, text = resp.status, resp.headers.get("Retry-After"), await resp.text()
        except aiohttp.ClientError as exc:
            raise network_error(exc) from None
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            answer = None
        if 200 <= status < 300:
            if (sid := provider_id(message.channel, answer)) is None:
                # Accepted, probably sent: another attempt could duplicate it, so no retry.
                raise ProviderRejected("bad_response", f"HTTP {status} without a message id: {text[:300]}")
            return sid
        raise _translate(status, answer, parse_retry_after(retry_after), text)


def _translate(status: int, answer: Any, retry_after: float | None, text: str) -> ProviderRetryable | ProviderRejected:
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    message = str(error.get("message") or text[:300] or f"HTTP {status}")
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    if details:
        message = f"{message}: {details}"
    code_text = str(code) if code is not None else f"http_{status}"
    if retryable_status(status) or code in TRANSIENT_CODES or error.get("is_transient") is True:
        return ProviderRetryable(code_text, message, retry_after)
    return ProviderRejected(code_text, message)
