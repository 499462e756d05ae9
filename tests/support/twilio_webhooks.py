"""Twilio webhooks into a running node, signed as Twilio signs them, and the settings that point a
process's Twilio traffic at the fake and its webhooks at the public URL."""

from __future__ import annotations

import aiohttp
from twilio.request_validator import RequestValidator

from tests.support import isolation
from tests.support.fake_providers import FakeTwilio
from tests.support.isolation import PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN


def twilio_env(fake: FakeTwilio) -> dict[str, str]:
    """Settings that point a process's Twilio traffic at ``fake`` and its webhooks at the public URL."""
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": isolation.TWILIO_AUTH_TOKEN,
        "TWILIO_API_BASE_URL": fake.url,
        "PUBLIC_BASE_URL": isolation.PUBLIC_BASE_URL,
    }


def twilio_signature(path: str, params: dict[str, str], token: str = TWILIO_AUTH_TOKEN, base: str = PUBLIC_BASE_URL):
    return RequestValidator(token).compute_signature(base + path, params)


async def post_twilio(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], signature: str | None = None
) -> tuple[int, str, str]:
    """POST a Twilio form to ``url``: signed for the public URL unless ``signature`` is given ("" sends none)."""
    path = url[url.index("/webhooks") :]
    headers = {} if signature == "" else {"X-Twilio-Signature": signature or twilio_signature(path, params)}
    async with http.post(url, data=params, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.text()
