"""Retrying a chat partition's message where it stands, so that the messages behind it wait.

A chat partition is consumed one message at a time so that one room's sends are applied in the
order they were published (``schemas/queues.py``). dramatiq's retries would put a failed message
back behind the others; for an error that says nothing about the commands (a lost connection, a
database restarting, a deadlock) the handler retries in place instead, for up to
``IN_PLACE_RETRY_S``, and the partition waits. Past that, dramatiq's retries take over and the
message is applied after those behind it. Retrying is safe: each attempt is one transaction, and
one that committed before its connection broke replays its stored outcome (the inbox).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

from workers.chat_batch import TRANSIENT

log = structlog.get_logger(__name__)

IN_PLACE_RETRY_S = 20.0

T = TypeVar("T")


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("chat.retry_in_place", attempt=state.attempt_number, error=repr(exc))


async def retry_in_place(apply: Callable[[], Awaitable[T]], within_s: float = IN_PLACE_RETRY_S) -> T:
    """``apply()``, again after a transient error, until it succeeds or ``within_s`` has passed."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT),
        wait=wait_exponential(multiplier=0.05, max=2.0),
        stop=stop_after_delay(within_s),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await apply()
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
