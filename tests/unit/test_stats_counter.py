"""The in-process statistics counter (infra/stats_counter.py) with a fake Redis."""

from __future__ import annotations

import asyncio

from infra.stats_counter import StatsCounter


class FakeRedis:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.calls = 0
        self.down = False

    async def incrby(self, key: str, n: int) -> int:
        self.calls += 1
        if self.down:
            raise ConnectionError("redis down")
        self.values[key] = self.values.get(key, 0) + n
        return self.values[key]


async def test_the_first_count_goes_out_at_once_then_at_most_one_flush_per_interval():
    redis = FakeRedis()
    counter = StatsCounter(redis, "gk:stats:accepted", interval_s=0.1)
    counter.add()
    await asyncio.sleep(0.01)
    assert redis.values == {"gk:stats:accepted": 1} and redis.calls == 1  # idle before: current at once
    for _ in range(100):
        counter.add()
    await asyncio.sleep(0.03)
    assert redis.calls == 1 and counter.pending == 100  # within the interval: counted here only
    await asyncio.sleep(0.15)
    assert redis.values == {"gk:stats:accepted": 101} and redis.calls == 2
    await asyncio.sleep(0.15)
    assert redis.calls == 2  # idle: no timer, no round trip


async def test_a_failed_flush_keeps_its_count_and_close_flushes_the_rest():
    redis = FakeRedis()
    counter = StatsCounter(redis, "k", interval_s=0.05)
    redis.down = True
    counter.add(3)
    await asyncio.sleep(0.01)
    assert counter.pending == 3 and redis.values == {} and redis.calls == 1
    redis.down = False
    counter.add(2)
    await counter.close()
    assert redis.values == {"k": 5} and counter.pending == 0
    counter.add()  # after close: counted, no timer started
    await asyncio.sleep(0.08)
    assert redis.values == {"k": 5}
