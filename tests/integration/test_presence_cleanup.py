"""Issue 12: presence and the call registry clean up without needing Redis at that instant.

Against the real Redis: disconnects change memory at once and reach Redis in a few batched
round trips, retried through an outage; every key a node writes carries a TTL, so a crashed node
leaves nothing behind for long; Redis pools wait for a free connection rather than fail.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from infra import presence_store
from infra.presence_store import NODE_TTL_S
from infra.redis_clients import redis_client, socketio_manager
from ingress.call_registry import CallRegistry
from ingress.presence import Presence
from tests.support import isolation
from tests.support.processes import free_port
from tests.support.tcp_balancer import TcpBalancer


def uid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def redis(iso) -> Redis:
    client = redis_client(isolation.REDIS_BASE)
    yield client
    await client.aclose()


@pytest.fixture
def prefix(iso) -> str:
    return f"{iso.key_prefix}:{uuid.uuid4().hex[:6]}"


async def test_a_thousand_disconnects_are_a_few_batched_writes(redis, prefix):
    presence = Presence(redis, prefix, "n1")
    registry = CallRegistry(redis, prefix, "n1", 60, 600)
    await presence.start()
    try:
        rooms = [uid("room") for _ in range(1000)]
        for i, room in enumerate(rooms):
            presence.connected(f"s{i}")
            await registry.connected(f"s{i}", "u1")
            await presence.joined(f"s{i}", "u1", room)
        assert await presence_store.online_users(redis, prefix, ["u1", "u2"]) == {"u1"}

        commands = 0
        original = redis.pipeline

        def counting_pipeline(*args, **kwargs):
            nonlocal commands
            commands += 1
            return original(*args, **kwargs)

        redis.pipeline = counting_pipeline  # type: ignore[method-assign]
        for i, room in enumerate(rooms):  # synchronous: no handler can fail on Redis
            assert presence.disconnected(f"s{i}") == [room]
            registry.disconnected(f"s{i}", "u1")
        assert presence.connection_count == 0
        async with asyncio.timeout(10):
            while presence.pending_writes or registry._flusher.pending:
                await asyncio.sleep(0.02)
        redis.pipeline = original  # type: ignore[method-assign]
        assert commands <= 10, commands  # batched: not one round trip per socket
        assert not await redis.exists(*(presence_store.members_key(prefix, r, "n1") for r in rooms))
        assert await presence_store.online_users(redis, prefix, ["u1"]) == set()
        assert (await presence_store.last_seen_ms(redis, prefix, ["u1"]))["u1"] is not None
        assert (await presence.cluster_stats())["connections"] == 0
    finally:
        await registry.close()
        await presence.stop()


async def test_writes_wait_out_a_redis_outage_and_never_raise(redis, prefix):
    dead = free_port()  # nothing listens here
    async with TcpBalancer([dead]) as proxy:
        flaky = redis_client(f"redis://127.0.0.1:{proxy.port}/0", pool_timeout_s=1)
        registry = CallRegistry(flaky, prefix, "n2", 60, 600)
        try:
            await registry.connected("s1", "u2")  # Redis unreachable: recorded in memory, written later
            assert await registry.is_online("u2")  # this node knows
            registry.disconnected("s1", "u2")
            await registry.connected("s2", "u3")
            async with asyncio.timeout(15):
                while registry._flusher.failures == 0:
                    await asyncio.sleep(0.05)
            assert registry._flusher.pending == 2
            # The live node key (presence's heartbeat) is what makes a node's users count.
            await redis.set(presence_store.node_key(prefix, "n2"), '{"connections": 1}', ex=NODE_TTL_S)
            await redis.sadd(presence_store.nodes_key(prefix), "n2")
            proxy.backends = [urlsplit(isolation.REDIS_BASE).port or 6379]  # Redis is back
            async with asyncio.timeout(15):
                while registry._flusher.pending:
                    await asyncio.sleep(0.05)
            assert await presence_store.online_users(redis, prefix, ["u2", "u3"]) == {"u3"}
            assert (await presence_store.last_seen_ms(redis, prefix, ["u2"]))["u2"] is not None
        finally:
            await registry.close()
            await flaky.aclose()


async def test_every_key_a_node_writes_expires_without_its_heartbeat(redis, prefix):
    presence = Presence(redis, prefix, "n3")
    registry = CallRegistry(redis, prefix, "n3", 60, 600)
    await presence.start()
    presence.connected("s1")
    await registry.connected("s1", "u4")
    await presence.joined("s1", "u4", "lobby")
    await presence._flusher.stop()  # the node "crashes": no more heartbeats, no cleanup
    await registry._flusher.stop()
    keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
    assert len(keys) >= 4, keys
    for key in keys:
        if key == presence_store.nodes_key(prefix):
            continue  # an index of nodes; readers drop the dead ones (see below)
        assert 0 < await redis.ttl(key) <= NODE_TTL_S, key
    await redis.delete(presence_store.node_key(prefix, "n3"))  # what its TTL does after 15 s
    assert await presence_store.online_users(redis, prefix, ["u4"]) == set()
    assert await presence.member_count("lobby") == 1  # this process's memory; other nodes see:
    other = Presence(redis, prefix, "n4")
    assert await other.member_count("lobby") == 0
    assert not await redis.sismember(presence_store.nodes_key(prefix), "n3")


async def test_pools_wait_for_a_free_connection_instead_of_failing(iso):
    client = redis_client(isolation.REDIS_BASE, max_connections=2, pool_timeout_s=5)
    try:
        assert isinstance(client.connection_pool, BlockingConnectionPool)
        # Twenty commands that each hold a connection for 50 ms, through a pool of two.
        results = await asyncio.gather(*(client.blpop([uid("nothing")], timeout=0.05) for _ in range(20)))
        assert results == [None] * 20
    finally:
        await client.aclose()
    manager = socketio_manager(isolation.REDIS_BASE, f"{iso.key_prefix}:socketio", write_only=True)
    manager._redis_connect()
    try:
        assert isinstance(manager.redis.connection_pool, BlockingConnectionPool)
        assert manager.redis.connection_pool.max_connections == 500
    finally:
        await manager.redis.aclose()


async def test_a_node_writes_its_presence_again_after_redis_was_out_of_reach(redis, prefix):
    presence = Presence(redis, prefix, "n5")
    registry = CallRegistry(redis, prefix, "n5", 60, 600)
    await presence.start()
    try:
        presence.connected("s1")
        await registry.connected("s1", "u5")
        await presence.joined("s1", "u5", "lobby")
        members, users = presence_store.members_key(prefix, "lobby", "n5"), presence_store.node_users_key(prefix, "n5")
        await redis.delete(members, users)  # they expired while the node could not renew them
        for flusher in (presence._flusher, registry._flusher):
            flusher.last_renewed -= 60
            flusher._next_renew = 0  # the next heartbeat, now
            flusher._wake.set()
        async with asyncio.timeout(10):
            while not await redis.exists(members) or not await redis.exists(users):
                await asyncio.sleep(0.05)
        assert await redis.hgetall(members) == {"s1": "u5"}
        assert await presence_store.online_users(redis, prefix, ["u5"]) == {"u5"}
    finally:
        await registry.close()
        await presence.stop()
