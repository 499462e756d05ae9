"""A Redis counter counted in this process and added to Redis (INCRBY) about once per interval.

A statistic (messages accepted, ...) needs no round trip per event: ``add`` only counts in memory
and schedules a flush, at most one per ``interval_s``: at once if the last one is older (an idle
process's counter is current right away), else when the interval since the last one ends. Nothing
runs while nothing is counted. A failed INCRBY keeps its count for the next flush; ``close``
flushes what is left (call it before the Redis client closes). One instance per event loop:
``add`` is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)


class StatsCounter:
    def __init__(self, redis: Redis, key: str, interval_s: float = 1.0) -> None:
        self._redis = redis
        self.key = key
        self._interval_s = interval_s
        self._pending = 0  # counted here, not yet in Redis
        self._timer: asyncio.Task[None] | None = None  # set only while it sleeps
        self._lock = asyncio.Lock()  # one INCRBY at a time: close() waits for the timer's
        self._closed = False
        self._last_flush = -math.inf  # the event loop's time of the last INCRBY sent

    @property
    def pending(self) -> int:
        return self._pending

    def add(self, n: int = 1) -> None:
        """Count ``n`` events; they reach Redis with the next flush (within ``interval_s``)."""
        self._pending += n
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and not self._closed:
            # A context of its own: the flush's log lines carry none of the caller's fields (command_id).
            self._timer = asyncio.create_task(self._flush_later(), context=contextvars.Context())

    async def _flush_later(self) -> None:
        try:
            wait_s = self._last_flush + self._interval_s - asyncio.get_running_loop().time()
            await asyncio.sleep(max(wait_s, 0))
        finally:
            self._timer = None
        await self.flush()

    async def flush(self) -> None:
        """Add what was counted since the last flush to Redis; on failure keep it for the next one."""
        async with self._lock:
            n, self._pending = self._pending, 0
            if n == 0:
                return
            self._last_flush = asyncio.get_running_loop().time()
            try:
                await self._redis.incrby(self.key, n)
            except Exception as exc:  # a statistic never fails its caller
                self._pending += n
                log.warning("stats.count_failed", key=self.key, count=n, error=repr(exc))
                self._schedule()

    async def close(self) -> None:
        """Stop the timer and flush what is left, after a flush in progress (a failure is logged)."""
        self._closed = True
        timer = self._timer
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self.flush()
