import uuid

from redis.asyncio import Redis

from domain.rate_limits import parse_rate_limits
from ingress.rate_limiter import RateLimiter
from tests.support.isolation import REDIS_BASE


async def test_windows_hold_and_report_retry_after(iso):
    redis = Redis.from_url(REDIS_BASE, decode_responses=True)
    limiter = RateLimiter(redis, iso.key_prefix, parse_rate_limits("3/1s,4/10s"))
    user = f"u-{uuid.uuid4().hex[:6]}"
    decisions = [await limiter.hit(user, str(i)) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert 0 < decisions[-1].retry_after_ms <= 1000
    other = await limiter.hit(f"{user}-other", "x")
    assert other.allowed  # limits are per user
    await redis.aclose()


async def test_a_refused_event_does_not_consume_other_windows(iso):
    import asyncio

    redis = Redis.from_url(REDIS_BASE, decode_responses=True)
    limiter = RateLimiter(redis, iso.key_prefix, parse_rate_limits("2/300ms,3/10s"))
    user = f"u-{uuid.uuid4().hex[:6]}"
    assert [(await limiter.hit(user, str(i))).allowed for i in range(5)] == [True, True, False, False, False]
    await asyncio.sleep(0.35)
    # Only two events were counted in the 10 s window, so one more fits.
    assert [(await limiter.hit(user, f"b{i}")).allowed for i in range(2)] == [True, False]
    await redis.aclose()
