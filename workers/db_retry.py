"""Retrying a database step where it stands after an error that says nothing about the step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

log = structlog.get_logger(__name__)

T = TypeVar("T")

# A lost or refused connection, a restart, a deadlock: trying the same transaction again may succeed.
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # asyncpg's protocol state after a connection was cut mid-operation
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
)


async def retry_transient(
    step: Callable[[], Awaitable[T]],
    *,
    within_s: float,
    errors: tuple[type[BaseException], ...] = TRANSIENT,
    log_event: str | None = None,
) -> T:
    """``step()``, again after one of ``errors``, until it succeeds or ``within_s`` has passed (then
    the last error is raised). Each attempt must be a transaction of its own."""

    def logged(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(log_event, attempt=state.attempt_number, error=repr(exc))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(errors),
        wait=wait_exponential(multiplier=0.05, max=2.0),
        stop=stop_after_delay(within_s),
        before_sleep=logged if log_event else None,
        reraise=True,
    ):
        with attempt:
            return await step()
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
