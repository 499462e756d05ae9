"""A worker's results publish to Redis (infra/redis_clients.py): delivered to a subscriber when Redis
answers, and an error the command fails with (so it is retried) when it does not, never dropped."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio

from infra.redis_clients import ResultPublishFailed, socketio_manager
from tests.support import isolation
from tests.support.processes import free_port


async def test_results_reach_a_subscriber_of_the_channel(iso):
    channel = f"{iso.key_prefix}:socketio-results"
    listener = redis.asyncio.Redis.from_url(isolation.REDIS_BASE)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    manager = socketio_manager(isolation.REDIS_BASE, channel, write_only=True)
    try:
        await manager.emit_many([("newMessage", {"n": 1}, "r/a"), ("newMessage", {"n": 2}, "r/a")])
        async with asyncio.timeout(5):
            while (message := await pubsub.get_message(timeout=1.0)) is None:
                pass
        assert [item["data"] for item in json.loads(message["data"])["data"]] == [{"n": 1}, {"n": 2}]
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await manager.redis.aclose()


async def test_a_worker_whose_redis_does_not_answer_fails_the_publish_instead_of_dropping_it():
    manager = socketio_manager(f"redis://127.0.0.1:{free_port()}/0", "nowhere", write_only=True, publish_retry_s=0.5)
    started = time.monotonic()
    with pytest.raises(ResultPublishFailed):
        await manager.emit_many([("newMessage", {"n": 1}, "r/a"), ("newMessage", {"n": 2}, "r/a")])
    assert 0.4 < time.monotonic() - started < 5  # retried for about publish_retry_s, then given up
