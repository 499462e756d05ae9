"""Per-user sliding-window rate limits in Redis, so a limit holds across every ingress node."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

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
        self._windows = windows
        self._prefix = prefix
        self._script = redis.register_script(_SLIDING_LOG)

    async def hit(self, user_id: str, event_id: str) -> RateDecision:
        """Count one event for ``user_id`` unless a window is full."""
        if not self._windows:
            return RateDecision(True)
        keys = [f"{self._prefix}:rl:{{{user_id}}}:{w.window_ms}" for w in self._windows]
        args: list[str | int] = [event_id]
        for window in self._windows:
            args += [window.limit, window.window_ms]
        retry = int(await self._script(keys=keys, args=args))
        return RateDecision(retry <= 0, max(retry, 0))
