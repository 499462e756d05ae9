"""Redis writes applied behind the caller's back: batched, retried with backoff, never raised.

A component that keeps its truth in memory (who is connected to this node, which rooms they are
in) marks a *key* of that truth dirty together with a *writer*: a function that adds to a
pipeline the commands making Redis match the in-memory state **as it is when the writer runs**.
Writers therefore never replay stale operations: a socket that left and joined again is simply
written as a member. The flusher runs them in one pipeline per batch of keys; a failed batch
stays pending and is retried with exponential backoff (tenacity), so a burst of a thousand
disconnects costs a handful of round trips and never an exception in a disconnect handler.

``write_now`` writes one key at once (a connect or a join, whose effect others should see right
away) and falls back to the flusher if Redis is not reachable at that instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Hashable

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential_jitter

log = structlog.get_logger(__name__)

Writer = Callable[[Pipeline], None]
_RENEW = ("__renew__",)
ATTEMPTS = 5  # per round; a failed round is logged, waits, and starts over with everything pending
ROUND_PAUSE_S = 2.0


class RedisFlusher:
    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        batch_keys: int = 500,
        renew: Writer | None = None,
        renew_every_s: float = 5.0,
    ) -> None:
        self._redis = redis
        self._name = name
        self._batch_keys = batch_keys
        self._renew = renew
        self._renew_every_s = renew_every_s
        self._next_renew = time.monotonic() + renew_every_s
        self._pending: dict[Hashable, tuple[int, Writer]] = {}
        self._inflight: set[Hashable] = set()
        self._gen = itertools.count(1)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.failures = 0  # rounds that failed every attempt (for tests and logs)
        self.last_renewed = time.monotonic()  # when ``renew``'s commands last reached Redis

    @property
    def pending(self) -> int:
        return len(self._pending)

    def renewal_lapsed(self, ttl_s: float) -> bool:
        """True when keys renewed with ``ttl_s`` may have expired meanwhile (Redis was out of reach)."""
        return time.monotonic() - self.last_renewed > ttl_s - self._renew_every_s

    # --- marking -----------------------------------------------------------------------
    def mark(self, key: Hashable, writer: Writer) -> None:
        """Have ``writer`` bring ``key`` up to date soon; never blocks, never raises."""
        self._pending[key] = (next(self._gen), writer)
        self._ensure_running()
        assert self._wake is not None
        self._wake.set()

    async def write_now(self, key: Hashable, writer: Writer) -> bool:
        """Write ``key`` at once; if Redis fails, leave it to the flusher. True if written now."""
        self._ensure_running()  # its heartbeat renews what this writes
        pipe = self._redis.pipeline(transaction=False)
        writer(pipe)
        try:
            await pipe.execute()
        except Exception as exc:
            log.info("redis_flusher.write_deferred", flusher=self._name, error=repr(exc))
            self.mark(key, writer)
            return False
        if key in self._inflight:  # a batch computed before this change may land after it: write again
            self.mark(key, writer)
        return True

    # --- lifecycle ---------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if (self._task is None or self._task.done()) and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"flusher:{self._name}")

    def start(self) -> None:
        self._ensure_running()

    async def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop the loop and try once more to write everything pending; True if nothing is left."""
        self._stopped = True
        if self._task is not None:
            # redis-py may turn a cancellation inside a command into a connection error, so the loop
            # also checks the flag; it never waits long between checks.
            self._task.cancel()
            if self._wake is not None:
                self._wake.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                async with asyncio.timeout(timeout_s):
                    await self._task
        self._renew = None
        try:
            async with asyncio.timeout(timeout_s):
                await self._flush_once()
        except Exception as exc:
            log.warning("redis_flusher.stop_failed", flusher=self._name, pending=self.pending, error=repr(exc))
        return not self._pending

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopped:
            if not self._pending:
                wait_s = max(self._next_renew - time.monotonic(), 0.0) if self._renew else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()
            self._wake.clear()
            if self._renew is not None and time.monotonic() >= self._next_renew:
                self._next_renew = time.monotonic() + self._renew_every_s
                self._pending.setdefault(_RENEW, (next(self._gen), self._renew))
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(ATTEMPTS),
                    wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
                    reraise=True,
                ):
                    with attempt:
                        await self._flush_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down for a while: keep everything pending and try again later
                if self._stopped:
                    break
                self.failures += 1
                log.warning("redis_flusher.failed", flusher=self._name, pending=self.pending, error=repr(exc))
                await asyncio.sleep(ROUND_PAUSE_S)

    async def flush(self) -> None:
        """Write everything pending now (raises if Redis fails; the keys stay pending)."""
        await self._flush_once()

    async def _flush_once(self) -> None:
        batch = list(self._pending.items())
        for start in range(0, len(batch), self._batch_keys):
            chunk = batch[start : start + self._batch_keys]
            pipe = self._redis.pipeline(transaction=False)
            for _, (_, writer) in chunk:
                writer(pipe)
            keys = [key for key, _ in chunk]
            self._inflight.update(keys)
            try:
                await pipe.execute()
            finally:
                self._inflight.difference_update(keys)
            for key, (gen, _) in chunk:
                if key == _RENEW:
                    self.last_renewed = time.monotonic()
                if self._pending.get(key, (None,))[0] == gen:  # not marked again meanwhile
                    del self._pending[key]
