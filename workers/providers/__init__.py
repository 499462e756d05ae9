"""Provider adapters (Twilio, Meta Graph) behind one small interface and two error types.

An adapter turns one outbound message into one HTTP request and answers the provider's message id,
or raises :class:`ProviderRetryable` (429, 5xx, a timeout, a broken connection: worth another
attempt) or :class:`ProviderRejected` (the provider refused the message for good: a bad number,
a contact outside the messaging window). Library and HTTP errors never leave an adapter.

:func:`send_with_retries` is the only retry loop: the client libraries' own retries are off, so
``OUTBOUND_MAX_ATTEMPTS`` is the number of requests a provider can see for one send.

A retried timeout or broken connection is ambiguous: the provider may have accepted the first
request before the answer was lost, and no provider offers an idempotency key for sends. So a
retry after a timeout can deliver a message twice; a retry after 429 or 5xx cannot (the provider
answered that it did not accept it).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base

from domain.channels import Channel
from infra.settings import Settings

log = structlog.get_logger(__name__)

# One connection pool per worker process for every provider. It must not be what limits how many
# sends are in flight: a worker thread has at most one send in flight, so this only has to exceed
# the thread count (aiohttp's default of 100 would cap a 128-thread pool).
HTTP_CONNECTION_LIMIT = 1024


class ProviderError(Exception):
    """A send the provider did not accept. ``code`` is the provider's error code when it gave one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProviderRetryable(ProviderError):
    """Worth another attempt, after ``retry_after_s`` if the provider said so."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after_s = retry_after_s


class ProviderRejected(ProviderError):
    """Refused for good: sending the same request again cannot succeed."""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    channel: Channel
    address: str  # our side: the number, phone_number_id or Instagram account id that sends
    contact: str  # their side
    body: str


class Sender(Protocol):
    async def send(self, message: OutboundMessage) -> str:
        """Hand the message to the provider once; answer its message id."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    timeout_s: float  # per attempt
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.outbound_max_attempts, settings.outbound_timeout_s)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def network_error(exc: aiohttp.ClientError) -> ProviderRetryable:
    return ProviderRetryable("network", f"{type(exc).__name__}: {exc}"[:500])


class _WaitRetryAfter(wait_base):
    """The provider's Retry-After when it sent one, else exponential backoff with jitter; both capped.

    Backoff before attempt n+1: ``base * 2**(n-1)`` plus up to ``base`` of jitter (0.5 s, 1 s, 2 s, …).
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._base = policy.backoff_base_s
        self._cap = policy.backoff_cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, ProviderRetryable) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self._cap)
        exponent = min(retry_state.attempt_number - 1, 32)
        return min(self._base * 2**exponent + random.uniform(0, self._base), self._cap)


def _log_retry(retry_state: RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning(
        "outbound.provider_retry",
        attempt=retry_state.attempt_number,
        wait_s=round(retry_state.upcoming_sleep, 3),
        error=getattr(exc, "code", repr(exc)),
    )


async def send_with_retries(send: Callable[[], Awaitable[str]], policy: RetryPolicy) -> str:
    """Up to ``policy.max_attempts`` attempts, each under ``policy.timeout_s``.

    Returns the provider's message id; raises :class:`ProviderRejected` at once on a permanent
    refusal, or the last :class:`ProviderRetryable` when the attempts are exhausted.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_WaitRetryAfter(policy),
        retry=retry_if_exception_type(ProviderRetryable),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            try:
                async with asyncio.timeout(policy.timeout_s):
                    return await send()
            except TimeoutError:
                raise ProviderRetryable("timeout", f"no answer within {policy.timeout_s} s") from None
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover


class Providers:
    """Every provider adapter of one worker process, sharing one HTTP connection pool.

    Create it on the event loop that will use it (the session binds to that loop), once per process.
    """

    def __init__(self, settings: Settings, policy: RetryPolicy | None = None) -> None:
        from workers.providers.meta_sender import MetaSender
        from workers.providers.twilio_sender import TwilioSender

        self.policy = policy or RetryPolicy.from_settings(settings)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=HTTP_CONNECTION_LIMIT, limit_per_host=0),
            # Each attempt's deadline is send_with_retries' timeout; this only bounds connecting.
            timeout=aiohttp.ClientTimeout(total=None, connect=self.policy.timeout_s),
        )
        self.twilio = TwilioSender(
            self.session,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            base_url=settings.twilio_api_base_url,
            status_callback=settings.public_base_url.rstrip("/") + "/webhooks/twilio",
        )
        self.meta = MetaSender(
            self.session,
            graph_url=settings.meta_graph_url,
            graph_version=settings.meta_graph_version,
            access_token=settings.meta_access_token.get_secret_value(),
        )

    def sender(self, channel: Channel) -> Sender:
        return self.twilio if channel.provider == "twilio" else self.meta

    async def send(self, message: OutboundMessage) -> str:
        sender = self.sender(message.channel)
        return await send_with_retries(lambda: sender.send(message), self.policy)

    async def close(self) -> None:
        await self.session.close()
