"""Sliding-window rate limits: per user in Redis, so a limit holds across every ingress node, and
per socket in this process (``LocalWindows``)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from domain.rate_limits import RateWindow

# All windows are checked before any is charged, so a refused event costs nothing.
# Time comes from Redis itself, so nodes with skewed clocks agree.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local retry = 0
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local freeing = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local wait = tonumber(freeing[2]) + window - now
    if wait > retry then retry = wait end
  end
end
if retry > 0 then return retry end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_ms: int = 0


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str, windows: tuple[RateWindow, ...]) -> None:
        self._redis = redis
        self._windows = windows
        self._prefix = prefix
        self._script = redis.register_script(_SLIDING_LOG)

    def _keys_and_args(self, user_id: str, event_id: str) -> tuple[list[str], list[str | int]]:
        # Hash-tagged per user: one user's windows share a Redis Cluster slot, as the script needs.
        keys = [f"{self._prefix}:rl:{{{user_id}}}:{w.window_ms}" for w in self._windows]
        args: list[str | int] = [event_id]
        for window in self._windows:
            args += [window.limit, window.window_ms]
        return keys, args

    async def hit(self, user_id: str, event_id: str) -> RateDecision:
        """Count one event for ``user_id`` unless a window is full."""
        if not self._windows:
            return RateDecision(True)
        keys, args = self._keys_and_args(user_id, event_id)
        return _decision(await self._script(keys=keys, args=args))

    async def hit_many(self, hits: Sequence[tuple[str, str]]) -> list[RateDecision]:
        """``hit`` for each ``(user_id, event_id)``, in order, in one Redis round trip.

        A pipeline without MULTI of the script, one call per event: every call touches one user's
        keys only, so it is valid on a Redis Cluster too (the client splits it per node). An event
        of a user repeated in ``hits`` counts after the earlier ones, exactly as consecutive ``hit``s.
        Only if Redis lost the script (a restart, SCRIPT FLUSH) does it take a second trip to load it.
        """
        if not self._windows or not hits:
            return [RateDecision(True)] * len(hits)
        decisions: list[RateDecision | None] = [None] * len(hits)
        todo = list(range(len(hits)))
        for _ in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for i in todo:
                keys, args = self._keys_and_args(*hits[i])
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
            missing = []
            for i, result in zip(todo, results, strict=True):
                if isinstance(result, NoScriptError):
                    missing.append(i)  # not run: nothing was counted for it
                elif isinstance(result, Exception):
                    raise result
                else:
                    decisions[i] = _decision(result)
            if not missing:
                break
            self._script.sha = await self._redis.script_load(_SLIDING_LOG)
            todo = missing
        else:
            raise NoScriptError("the rate-limit script could not be loaded")
        return [d for d in decisions if d is not None]


def _decision(retry_ms: int | str | bytes) -> RateDecision:
    retry = int(retry_ms)
    return RateDecision(retry <= 0, max(retry, 0))


class LocalWindows:
    """The same sliding windows, kept in this process: for what lives on one node (a socket).

    Nothing to share, so no Redis round trip; ``forget`` a key when its socket goes away.
    """

    def __init__(self, windows: tuple[RateWindow, ...], clock: Callable[[], float] = time.monotonic) -> None:
        self._windows = windows
        self._longest_ms = max((w.window_ms for w in windows), default=0)
        self._keep = max((w.limit for w in windows), default=0)
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> RateDecision:
        """Count one event for ``key`` unless a window is full (a refused event is not counted)."""
        if not self._windows:
            return RateDecision(True)
        now = self._clock() * 1000
        hits = self._hits.setdefault(key, deque(maxlen=self._keep))
        while hits and hits[0] <= now - self._longest_ms:
            hits.popleft()
        retry = 0.0
        for window in self._windows:
            inside = sum(1 for t in hits if t > now - window.window_ms)
            if inside >= window.limit:
                freeing = hits[len(hits) - window.limit]  # the hit whose expiry makes room
                retry = max(retry, freeing + window.window_ms - now)
        if retry > 0:
            return RateDecision(False, max(1, math.ceil(retry)))
        hits.append(now)
        return RateDecision(True)

    def forget(self, key: str) -> None:
        self._hits.pop(key, None)
