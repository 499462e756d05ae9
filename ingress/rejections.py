"""How a socket handler refuses an event: one error type, answered to the sender alone."""

from __future__ import annotations

from typing import Any

from ingress.rate_limiter import RateDecision


class Rejected(Exception):
    """Answered as ``{status: "rejected", error: {code, message}, **extra}`` (or an ``error`` event)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


def rate_limited(what: str, retry_after_ms: int) -> Rejected:
    """The refusal every socket limit answers with: ``rate_limited`` and ``retryAfterMs``."""
    return Rejected("rate_limited", f"{what}; retry in {retry_after_ms} ms", retryAfterMs=retry_after_ms)


def check_allowed(decision: RateDecision, what: str) -> None:
    """Raise ``rate_limited`` unless the limiter allowed the event."""
    if not decision.allowed:
        raise rate_limited(what, decision.retry_after_ms)
