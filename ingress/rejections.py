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


def overloaded(what: str, retry_after_ms: int) -> Rejected:
    """Refused before anything was published: nothing was charged, and a retry after
    ``retryAfterMs`` is safe with or without a ``clientMessageId``."""
    return Rejected(
        "overloaded", f"{what}; nothing was charged, retry in {retry_after_ms} ms", retryAfterMs=retry_after_ms
    )


UNAVAILABLE_RETRY_MS = 1_000  # a service outage: when a sender may try again


def unavailable(service: str, consequence: str | None = "nothing was charged") -> Rejected:
    """A service the event needs (RabbitMQ, Redis) cannot be reached. ``consequence`` is said only
    when it is certain: the event was refused before anything was published."""
    said = f"{consequence}, " if consequence else ""
    return Rejected(
        "unavailable",
        f"{service} is unreachable; {said}retry in {UNAVAILABLE_RETRY_MS} ms",
        retryAfterMs=UNAVAILABLE_RETRY_MS,
    )


def unconfirmed(client_message_id: str | None, message_id: str) -> Rejected:
    """Published, but RabbitMQ's confirm did not come: the message may yet be applied and charged.
    ``messageId`` lets the client recognise it if it arrives (``newMessage``, ``history``)."""
    outcome = "the message was sent to the queue but not confirmed, so it may still be delivered and charged"
    if client_message_id is not None:
        advice = "retry with the same clientMessageId: it is charged once"
    else:
        advice = "it had no clientMessageId, so a retry may be charged twice"
    return Rejected("unconfirmed", f"{outcome}; {advice}", messageId=message_id)
