"""Sign webhook payloads as Stripe and LemonSqueezy do.

Stripe: ``Stripe-Signature: t=<unix ts>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``
(https://docs.stripe.com/webhooks#verify-manually). LemonSqueezy: ``X-Signature`` is the hex
HMAC-SHA256 of the raw body with the webhook's signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def stripe_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + body
    return f"t={t},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def lemonsqueezy_signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
