"""The admin API's queue figures: one collection shared by concurrent callers, reused briefly."""

from __future__ import annotations

import asyncio

import pytest

from infra.queue_stats import QueueStatsUnavailable
from infra.settings import Settings
from ingress.http.admin_api import QueueStatsCache
from schemas.queues import ALL_QUEUES


async def test_concurrent_callers_share_one_collection_then_it_is_refreshed(settings: Settings):
    cache = QueueStatsCache(settings, max_age_s=0.5)
    first = await asyncio.gather(*(cache.get() for _ in range(5)))
    assert all(stats is first[0] for stats in first)  # one collection for all five
    assert [row.queue for row in first[0].rows] == list(ALL_QUEUES)
    assert await cache.get() is first[0]  # still fresh
    await asyncio.sleep(0.6)
    again = await cache.get()
    assert again is not first[0] and again.collected_at > first[0].collected_at


async def test_a_failure_reaches_every_waiter_and_the_next_call_tries_again(settings: Settings):
    broken = settings.model_copy(update={"amqp_url": settings.amqp_url + "-no-such-vhost"})
    cache = QueueStatsCache(broken)
    results = await asyncio.gather(cache.get(), cache.get(), return_exceptions=True)
    assert all(isinstance(r, QueueStatsUnavailable) for r in results)
    with pytest.raises(QueueStatsUnavailable):
        await cache.get()
