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


async def test_hit_many_counts_like_consecutive_hits_in_one_round_trip(iso):
    redis = Redis.from_url(REDIS_BASE, decode_responses=True)
    limiter = RateLimiter(redis, iso.key_prefix, parse_rate_limits("2/1s,3/10s"))
    alice, bob, carol = (f"u-{uuid.uuid4().hex[:6]}-{name}" for name in ("alice", "bob", "carol"))
    assert (await limiter.hit(carol, "before")).allowed  # windows already holding hits count too
    assert (await limiter.hit(carol, "before-2")).allowed
    trips = 0
    real_pipeline = redis.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        async def execute(*a, **kw):
            nonlocal trips
            trips += 1
            return await real_execute(*a, **kw)

        pipe.execute = execute
        return pipe

    redis.pipeline = counting_pipeline
    hits = [(alice, "a1"), (bob, "b1"), (alice, "a2"), (carol, "c1"), (alice, "a3"), (bob, "b2")]
    decisions = await limiter.hit_many(hits)
    assert trips == 1
    assert [d.allowed for d in decisions] == [True, True, True, False, False, True]
    assert 0 < decisions[3].retry_after_ms <= 1000 and 0 < decisions[4].retry_after_ms <= 1000
    # The refused hit of alice was not counted: her 10 s window holds two, so one more fits after 1 s.
    assert await redis.zcard(f"{iso.key_prefix}:rl:{{{alice}}}:10000") == 2
    assert [d.allowed for d in await limiter.hit_many([])] == []
    await redis.aclose()


async def test_hit_many_loads_the_script_when_redis_does_not_know_it(iso):
    redis = Redis.from_url(REDIS_BASE, decode_responses=True)
    limiter = RateLimiter(redis, iso.key_prefix, parse_rate_limits("1/1s"))
    limiter._script.sha = "0" * 40  # as after a Redis restart (a SCRIPT FLUSH would hit other tests' scripts)
    user = f"u-{uuid.uuid4().hex[:6]}"
    decisions = await limiter.hit_many([(user, "1"), (user, "2")])
    assert [d.allowed for d in decisions] == [True, False]  # each counted once, after the reload
    assert await redis.zcard(f"{iso.key_prefix}:rl:{{{user}}}:1000") == 1
    await redis.aclose()
