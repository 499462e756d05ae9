"""infra.queue_stats against the real RabbitMQ: exact counts, a held consumer, ages and rates.

Each test gets its own vhost, so the figures are only its own messages. Messages are published by
the real CommandPublisher (which sets the timestamp property RabbitMQ reports the oldest age from).
RabbitMQ's management statistics refresh every 5 s, so the figures are polled with a deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import aio_pika
import dramatiq
import pytest
from dramatiq.common import xq_name

from infra import dead_letters, queue_stats
from infra.amqp import encode_actor_message, topology
from infra.dead_letters import Filters
from infra.publisher import CommandPublisher
from infra.queue_stats import QueueRow, QueueStats, VhostNotFound
from infra.settings import Settings
from schemas.queues import (
    AI_QUEUE,
    ALL_QUEUES,
    BILLING_QUEUE,
    CHAT_PARTITION_QUEUES,
    CHAT_QUEUE,
    OUTBOUND_QUEUE,
    SEND_MESSAGE_ACTOR,
    WORK_QUEUES,
)
from tests.support import isolation
from tests.support.processes import free_port

POLL_DEADLINE_S = 60


@pytest.fixture
async def vhost_settings(settings: Settings) -> AsyncIterator[Settings]:
    run = isolation.new_isolation()
    isolation.create_vhost(run.vhost)
    try:
        yield settings.model_copy(update={"amqp_url": run.amqp_url, "rabbitmq_management_url": ""})
    finally:
        isolation.delete_vhost(run.vhost)


async def publish(publisher: CommandPublisher, queue: str, count: int) -> None:
    for _ in range(count):
        await publisher.publish_payload(queue, "some_actor", {"command_id": str(uuid.uuid4()), "type": "test"})


async def poll(
    settings: Settings, done: Callable[[QueueStats], bool], collect: Callable[[Settings], Awaitable[QueueStats]]
) -> QueueStats:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while True:
        stats = await collect(settings)
        if done(stats):
            return stats
        assert time.monotonic() < deadline, f"figures never matched: {stats.model_dump()}"
        await asyncio.sleep(0.5)


def rows(stats: QueueStats) -> dict[str, QueueRow]:
    return {row.queue: row for row in stats.rows}


def counts(stats: QueueStats) -> dict[str, tuple[int, int, int, int, int]]:
    return {r.queue: (r.ready, r.unacked, r.delayed, r.dead, r.consumers) for r in stats.rows}


class Scenario:
    """chat: 7 ready, 2 delayed; outbound: 3 ready, 1 dead-lettered by a reject; ai: 3 ready and
    2 held unacked by one consumer; billing: declared, empty; chain: never declared."""

    expected: ClassVar[dict[str, tuple[int, int, int, int, int]]] = {
        CHAT_QUEUE: (7, 0, 2, 0, 0),
        OUTBOUND_QUEUE: (3, 0, 0, 1, 0),
        AI_QUEUE: (3, 2, 0, 0, 1),
        BILLING_QUEUE: (0, 0, 0, 0, 0),
        "chain": (0, 0, 0, 0, 0),
    }

    def __init__(self) -> None:
        self.held: list[Any] = []
        self.started_at = 0.0
        self.published_at = 0.0

    async def _hold(self, message: Any) -> None:
        self.held.append(message)

    async def run(self, settings: Settings, connection: aio_pika.abc.AbstractConnection) -> CommandPublisher:
        queues = (CHAT_QUEUE, OUTBOUND_QUEUE, AI_QUEUE, BILLING_QUEUE)
        publisher = CommandPublisher(settings.amqp_url, queues, timeout_s=10)
        await publisher.start()
        self.started_at = time.time()
        await publish(publisher, CHAT_QUEUE, 7)
        self.published_at = time.time()
        await publish(publisher, OUTBOUND_QUEUE, 4)
        await publish(publisher, AI_QUEUE, 5)
        channel = await connection.channel()
        # Two retries waiting in chat.DQ, published there the way dramatiq schedules them.
        for _ in range(2):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=CHAT_QUEUE + ".DQ")
        # One outbound message rejected without requeue: RabbitMQ dead-letters it to outbound.XQ.
        outbound = await channel.get_queue(OUTBOUND_QUEUE)
        message = await outbound.get(timeout=10)
        assert message is not None
        await message.reject(requeue=False)
        # A consumer with prefetch 2 that never acks: ai has 2 unacked and 1 consumer.
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=2)
        ai = await consumer.get_queue(AI_QUEUE)
        await ai.consume(self._hold)
        return publisher


@pytest.fixture
async def amqp(vhost_settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect(vhost_settings.amqp_url)
    async with connection:
        yield connection


async def test_management_api_counts_consumers_oldest_age_and_rates(vhost_settings: Settings, amqp):
    scenario = Scenario()
    publisher = await scenario.run(vhost_settings, amqp)
    try:
        await asyncio.sleep(2)
        stats = await poll(vhost_settings, lambda s: counts(s) == Scenario.expected, queue_stats.collect)
        assert stats.source == "management" and stats.fallback_reason is None
        assert stats.vhost == queue_stats.vhost_of(vhost_settings.amqp_url)
        assert stats.endpoint == "http://127.0.0.1:15672" and stats.rate_window_s == 60
        by_queue = rows(stats)
        assert [row.queue for row in stats.rows] == list(ALL_QUEUES)
        assert by_queue["chain"].state == "absent" and by_queue["chain"].in_rate is None
        assert {by_queue[q].state for q in (CHAT_QUEUE, OUTBOUND_QUEUE, AI_QUEUE, BILLING_QUEUE)} <= {
            "running",
            "idle",
        }
        assert by_queue[CHAT_QUEUE].queue_type == "classic"
        # The head of chat was published between started_at and published_at (timestamps are whole seconds).
        age = by_queue[CHAT_QUEUE].oldest_age_s
        now = stats.collected_at.timestamp()
        assert age is not None and now - scenario.published_at <= age <= now - int(scenario.started_at)
        assert age >= 2
        assert by_queue[BILLING_QUEUE].oldest_age_s is None  # nothing ready

        # Rates: the broker's samples arrive every 5 s, not at once for every queue; poll until the burst shows.
        def burst_sampled(s: QueueStats) -> bool:
            chat, ai = rows(s)[CHAT_QUEUE], rows(s)[AI_QUEUE]
            return (chat.in_rate or 0) > 0 and (ai.in_rate or 0) > 0 and (ai.deliver_rate or 0) > 0

        stats = await poll(vhost_settings, burst_sampled, queue_stats.collect)
        assert rows(stats)[AI_QUEUE].in_rate > 0 and rows(stats)[AI_QUEUE].deliver_rate > 0
        assert rows(stats)[BILLING_QUEUE].in_rate == 0
        # Acking the held messages shows up as the ai queue's out-rate.
        assert len(scenario.held) == 2
        for message in scenario.held:
            await message.ack()
        stats = await poll(vhost_settings, lambda s: (rows(s)[AI_QUEUE].out_rate or 0) > 0, queue_stats.collect)
        assert rows(stats)[CHAT_QUEUE].out_rate == 0
    finally:
        await publisher.close()


async def test_rabbitmqctl_is_the_fallback_when_the_management_api_is_unreachable(vhost_settings: Settings, amqp):
    closed = f"http://127.0.0.1:{free_port()}"
    settings = vhost_settings.model_copy(update={"rabbitmq_management_url": closed})
    scenario = Scenario()
    publisher = await scenario.run(settings, amqp)
    try:
        stats = await poll(settings, lambda s: counts(s) == Scenario.expected, queue_stats.collect)
        assert stats.source == "rabbitmqctl" and stats.rate_window_s is None
        assert stats.fallback_reason is not None and closed in stats.fallback_reason
        assert all(row.in_rate is None and row.out_rate is None for row in stats.rows)
        age = rows(stats)[CHAT_QUEUE].oldest_age_s
        now = stats.collected_at.timestamp()
        assert age is not None and now - scenario.published_at <= age <= now - int(scenario.started_at)
    finally:
        await publisher.close()


async def test_an_unknown_vhost_is_an_error_not_a_fallback(vhost_settings: Settings):
    settings = vhost_settings.model_copy(update={"amqp_url": "amqp://guest:guest@127.0.0.1:5672/gk_no_such_vhost"})
    with pytest.raises(VhostNotFound, match="gk_no_such_vhost"):
        await queue_stats.collect(settings)


async def test_wrong_management_credentials_fall_back_and_say_why(vhost_settings: Settings, amqp):
    settings = vhost_settings.model_copy(update={"rabbitmq_management_url": "http://guest:wrong@127.0.0.1:15672"})
    channel = await amqp.channel()
    for name, arguments in topology(CHAT_QUEUE):
        await channel.declare_queue(name, durable=True, arguments=arguments)
    stats = await queue_stats.collect(settings)
    assert stats.source == "rabbitmqctl" and "401" in (stats.fallback_reason or "")
    assert rows(stats)[CHAT_QUEUE].state == "running"


def test_management_endpoint_is_derived_from_amqp_url_without_leaking_credentials(settings: Settings):
    derived = settings.model_copy(
        update={"amqp_url": "amqps://app:s%40cret@rabbit.internal:5671/prod", "rabbitmq_management_url": ""}
    )
    endpoint = queue_stats.management_endpoint(derived)
    assert (endpoint.url, endpoint.user, endpoint.password) == ("https://rabbit.internal:15671", "app", "s@cret")
    assert queue_stats.vhost_of(derived.amqp_url) == "prod"
    explicit = derived.model_copy(update={"rabbitmq_management_url": "http://ops:pw@mgmt:8080/rabbit/"})
    endpoint = queue_stats.management_endpoint(explicit)
    assert (endpoint.url, endpoint.user, endpoint.password) == ("http://mgmt:8080/rabbit", "ops", "pw")
    assert queue_stats.vhost_of("amqp://guest:guest@h:5672") == "/"
    assert queue_stats.vhost_of("amqp://guest:guest@h:5672/%2F") == "/"


@pytest.mark.parametrize("source", ["management", "rabbitmqctl"])
async def test_the_chat_row_folds_in_the_declared_partitions(vhost_settings: Settings, amqp, source: str):
    """chat: 2 ready; chat.p1: 3 ready and 1 dead letter; chat.p0, p2, p3 not declared (they add nothing)."""
    settings = vhost_settings
    if source == "rabbitmqctl":
        settings = vhost_settings.model_copy(update={"rabbitmq_management_url": f"http://127.0.0.1:{free_port()}"})
    partition = CHAT_PARTITION_QUEUES[1]
    publisher = CommandPublisher(settings.amqp_url, (CHAT_QUEUE, partition), timeout_s=10)
    await publisher.start()
    try:
        await publish(publisher, CHAT_QUEUE, 2)
        await publish(publisher, partition, 3)
        channel = await amqp.channel()
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=xq_name(partition))
        # The management API can report the counts a sample before the queue's state ("unknown")
        # and before its head message's timestamp (the oldest age): wait for all three.
        stats = await poll(
            settings,
            lambda s: (
                counts(s)[CHAT_QUEUE] == (5, 0, 0, 1, 0)
                and rows(s)[CHAT_QUEUE].state != "unknown"
                and rows(s)[CHAT_QUEUE].oldest_age_s is not None
            ),
            queue_stats.collect,
        )
        assert stats.source == source
        assert [row.queue for row in stats.rows] == list(ALL_QUEUES)
        chat = rows(stats)[CHAT_QUEUE]
        assert chat.state in ("running", "idle") and chat.oldest_age_s is not None
    finally:
        await publisher.close()


async def test_dead_letters_of_chat_cover_its_partitions_and_requeue_to_chat(vhost_settings: Settings, amqp):
    channel = await amqp.channel()
    for queue in (CHAT_QUEUE, CHAT_PARTITION_QUEUES[2]):  # the other partitions were never declared
        for name, arguments in topology(queue):
            await channel.declare_queue(name, durable=True, arguments=arguments)
    body = encode_actor_message(CHAT_PARTITION_QUEUES[2], SEND_MESSAGE_ACTOR, {"command": {"command_id": "c1"}}, "m1")
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=xq_name(CHAT_PARTITION_QUEUES[2]))
    url = vhost_settings.amqp_url
    chat = Filters(dead_letters.queues_for(CHAT_QUEUE, WORK_QUEUES))
    (found,) = await dead_letters.browse(url, chat)
    assert (found.queue, found.message_id, found.command_id) == (CHAT_PARTITION_QUEUES[2], "m1", "c1")
    assert await dead_letters.browse(url, Filters(dead_letters.queues_for(CHAT_PARTITION_QUEUES[3], WORK_QUEUES))) == []
    assert len(await dead_letters.browse(url, Filters(WORK_QUEUES))) == 1
    (moved,) = await dead_letters.requeue(url, chat)
    assert moved.message_id == "m1"
    assert await dead_letters.browse(url, Filters(WORK_QUEUES)) == []
    requeued = await (await channel.get_queue(CHAT_QUEUE)).get(timeout=10)
    assert requeued is not None and dramatiq.Message.decode(requeued.body).queue_name == CHAT_QUEUE
    await requeued.ack()
