"""Several RabbitMQ nodes in AMQP_URL, quorum queues, and Redis through Sentinel, against the real services.

The "dead node" of a cluster is a closed port on this machine: connecting to it is refused at
once, as a stopped RabbitMQ node's would be. Each test has its own vhost so that closing "all
connections of the vhost" closes only the connections the test made.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import aio_pika
import pytest
import structlog
from dramatiq.common import xq_name

from infra.amqp import TopologyBroker, amqp_urls, connect_first, topology
from infra.publisher import CommandPublisher, PublishFailed
from infra.redis_clients import redis_client, socketio_manager
from schemas.queues import ALL_QUEUES, CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.commands import chat_command
from tests.support.processes import free_port
from tests.support.sentinel import sentinel


def node_url(vhost: str, port: int = 5672) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/{vhost}"


@pytest.fixture
def vhost(iso) -> Iterator[str]:
    name = f"{iso.vhost}_urls_{uuid.uuid4().hex[:6]}"
    isolation.create_vhost(name)
    yield name
    isolation.delete_vhost(name)


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


async def ready_count(url: str, queue: str) -> int:
    connection = await connect_first(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def wait_connected(publisher: CommandPublisher, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not publisher.connected:
            await asyncio.sleep(0.05)


async def test_publisher_skips_a_dead_node_and_publishes_confirmed(vhost):
    url = f"{node_url(vhost, free_port())};{node_url(vhost)}"
    publisher = CommandPublisher(url, (CHAT_QUEUE,), 5.0, connection_name="test-dead-first")
    await publisher.start()
    try:
        await wait_connected(publisher)
        await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 1))
    finally:
        await publisher.close()
    assert await ready_count(url, CHAT_QUEUE) == 1


async def test_publisher_fails_over_when_its_connection_is_lost_and_confirms_later_publishes(vhost):
    """Node order [live, dead]: after the live connection is closed the publisher tries the next
    node (dead) first, then comes round to the live one, and publishes are confirmed again."""
    dead = node_url(vhost, free_port())
    url = f"{node_url(vhost)};{dead}"
    publisher = CommandPublisher(url, (CHAT_QUEUE,), 10.0, connection_name="test-lost")
    await publisher.start()
    try:
        await wait_connected(publisher)
        await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 1))
        with structlog.testing.capture_logs() as logs:
            rabbitmqctl("close_all_connections", "--vhost", vhost, "test: the node went away")
            async with asyncio.timeout(30):
                while not any(e["event"] == "amqp.connection_lost" for e in logs):
                    await asyncio.sleep(0.05)
            # Published while the failover is under way: waits for the new channel, then confirmed.
            await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 2))
        events = [(e["event"], e.get("node")) for e in logs if e["event"].startswith("amqp.")]
        dead_node = dead.split("@")[1].split("/")[0]
        assert events[0] == ("amqp.connection_lost", None)
        assert ("amqp.connect_failed", dead_node) in events
        assert events[-1] == ("amqp.connected", "127.0.0.1:5672")
        assert events.index(("amqp.connect_failed", dead_node)) < len(events) - 1
        await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 3))
    finally:
        await publisher.close()
    assert await ready_count(url, CHAT_QUEUE) == 3


async def test_publisher_with_no_live_node_fails_the_publish_and_keeps_trying(vhost):
    url = f"{node_url(vhost, free_port())};{node_url(vhost, free_port())}"
    publisher = CommandPublisher(url, (CHAT_QUEUE,), 0.5, connection_name="test-none")
    await publisher.start()
    try:
        with pytest.raises(PublishFailed):
            await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 1))
        assert not publisher.connected
    finally:
        await publisher.close()


def queue_types(vhost: str) -> dict[str, str]:
    rows = rabbitmqctl("list_queues", "-q", "-p", vhost, "name", "type").splitlines()
    return {parts[0]: parts[1] for parts in (row.split() for row in rows) if len(parts) == 2}


async def test_quorum_queues_declared_alike_by_ingress_publisher_and_dramatiq_broker(vhost):
    """The same arguments on both sides: either may declare first, the other's declaration must pass."""
    url = f"{node_url(vhost, free_port())};{node_url(vhost)}"
    broker = TopologyBroker(url=list(amqp_urls(url)), queue_type="quorum", confirm_delivery=True)
    try:
        broker.declare_queue(CHAT_QUEUE, ensure=True)  # dramatiq first, for chat
        publisher = CommandPublisher(url, ALL_QUEUES, 5.0, connection_name="test-quorum", queue_type="quorum")
        await publisher.start()
        try:
            await wait_connected(publisher)
            await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 1))
        finally:
            await publisher.close()
        broker.declare_queue(ALL_QUEUES[-1], ensure=True)  # the publisher first, for this one
        assert broker.get_queue_message_counts(CHAT_QUEUE) == (1, 0, 0)
    finally:
        broker.close()
    types = queue_types(vhost)
    expected = {name for queue in ALL_QUEUES for name, _ in topology(queue)}
    assert expected <= set(types) and {types[name] for name in expected} == {"quorum"}
    # A classic declaration of the same queue is refused: the setting must agree everywhere.
    connection = await connect_first(url)
    async with connection:
        channel = await connection.channel()
        name, arguments = topology(CHAT_QUEUE, "classic")[0]
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(name, durable=True, arguments=arguments)
    assert xq_name(CHAT_QUEUE) in types


async def test_redis_clients_find_the_master_through_sentinel(iso):
    key = f"{iso.key_prefix}:sentinel:{uuid.uuid4().hex[:6]}"
    with sentinel() as running:
        client = redis_client(running.url)
        manager = socketio_manager(running.url, f"{iso.key_prefix}:socketio", write_only=True)
        try:
            await client.set(key, "via-sentinel", ex=60)
            plain = redis_client(isolation.REDIS_BASE)
            try:
                assert await plain.get(key) == "via-sentinel"  # the same server: the master
                pubsub = plain.pubsub()
                await pubsub.subscribe(f"{iso.key_prefix}:socketio")
                await manager.emit("ping", {"n": 1}, room="nobody")
                async with asyncio.timeout(10):
                    while (got := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is None:
                        pass
                assert "ping" in got["data"]
                await pubsub.aclose()
            finally:
                await plain.delete(key)
                await plain.aclose()
        finally:
            await client.aclose()


async def test_a_publisher_whose_queue_type_disagrees_with_the_vhost_never_publishes(vhost):
    """Classic queues already there, quorum asked for: refused declarations, a degraded publisher, nothing sent."""
    url = node_url(vhost)
    connection = await connect_first(url)
    async with connection:
        channel = await connection.channel()
        for name, arguments in topology(CHAT_QUEUE, "classic"):
            await channel.declare_queue(name, durable=True, arguments=arguments)
    publisher = CommandPublisher(url, (CHAT_QUEUE,), 1.0, connection_name="test-mismatch", queue_type="quorum")
    with structlog.testing.capture_logs() as logs:
        await publisher.start()
        try:
            with pytest.raises(PublishFailed):
                await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 1))
            assert not publisher.connected
        finally:
            await publisher.close()
    assert any(e["event"] == "amqp.connect_failed" and "PRECONDITION_FAILED" in e["error"] for e in logs), logs
    assert queue_types(vhost)[CHAT_QUEUE] == "classic" and await ready_count(url, CHAT_QUEUE) == 0
