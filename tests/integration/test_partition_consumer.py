"""A chat partition's consumer (workers/partition_consumer.py) against the real RabbitMQ: waiting
messages are handed over as one batch, in queue order, never two at once; acks and rejections
reach every message a batch was made of."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pika
import pytest
from dramatiq.common import xq_name

from infra.amqp import TopologyBroker
from schemas.queues import SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR
from tests.support import isolation
from workers.partition_consumer import PARTITION_PREFETCH, Bundle, PartitionConsumer

PARTITION = "chat.p0"
TIMEOUT_MS = 300


@pytest.fixture
def amqp_url() -> Iterator[str]:
    run = isolation.new_isolation()
    isolation.create_vhost(run.vhost)
    try:
        yield run.amqp_url
    finally:
        isolation.delete_vhost(run.vhost)


def make_broker(url: str, max_commands: int | None = None) -> TopologyBroker:
    consumer = (
        PartitionConsumer if max_commands is None else functools.partial(PartitionConsumer, max_commands=max_commands)
    )
    broker = TopologyBroker(
        url=[url], middleware=[], partition_consumer=consumer, partition_prefetch=PARTITION_PREFETCH
    )
    broker.declare_queue(PARTITION)
    return broker


def send(n: int) -> dict[str, Any]:
    return {"type": "chat.send_message", "command_id": f"c{n}"}


def publish(broker: TopologyBroker, actor: str, command: dict, options: dict | None = None) -> str:
    message = dramatiq.Message(
        queue_name=PARTITION, actor_name=actor, args=(), kwargs={"command": command}, options=options or {}
    )
    broker.enqueue(message)
    return message.message_id


def command_ids(message: Any) -> list[str]:
    command = message.kwargs["command"]
    inner = command["commands"] if message.actor_name == SEND_BATCH_ACTOR else [command]
    return [c["command_id"] for c in inner]


def messages_left(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def publish_mixed(broker: TopologyBroker, count: int) -> list[str]:
    """Singles and batches of three, alternately; returns every command id in publish order."""
    expected: list[str] = []
    for i in range(count):
        if i % 2:
            batch = [send(10 * i + k) for k in range(3)]
            publish(broker, SEND_BATCH_ACTOR, {"type": "chat.send_batch", "command_id": f"b{i}", "commands": batch})
            expected += [c["command_id"] for c in batch]
        else:
            publish(broker, SEND_MESSAGE_ACTOR, send(10 * i))
            expected.append(f"c{10 * i}")
    return expected


def test_waiting_messages_are_handed_over_as_one_batch_in_queue_order(amqp_url):
    broker = make_broker(amqp_url)
    expected = publish_mixed(broker, 40)
    consumer = broker.consume(PARTITION, timeout=TIMEOUT_MS)
    handed: list[Any] = []
    try:
        while sum(len(command_ids(m)) for m in handed) < len(expected):
            message = next(consumer)
            if message is None:
                continue
            handed.append(message)
            assert next(consumer) is None  # nothing more until this one is done: the order holds
            consumer.ack(message)
    finally:
        consumer.close()
    assert [cid for m in handed for cid in command_ids(m)] == expected
    assert len(handed) < 40 and any(isinstance(m, Bundle) for m in handed)
    assert messages_left(amqp_url, PARTITION) == 0  # every message of every bundle was acked


def test_a_bundle_never_exceeds_the_command_cap_and_the_message_it_left_comes_next(amqp_url):
    broker = make_broker(amqp_url, max_commands=4)
    expected = publish_mixed(broker, 12)
    consumer = broker.consume(PARTITION, timeout=TIMEOUT_MS)
    handed: list[list[str]] = []
    try:
        while sum(map(len, handed)) < len(expected):
            message = next(consumer)
            if message is None:
                continue
            handed.append(command_ids(message))
            consumer.ack(message)
    finally:
        consumer.close()
    assert [cid for ids in handed for cid in ids] == expected
    assert max(map(len, handed)) <= 4 and any(len(ids) > 1 for ids in handed[1:])


def test_a_retried_message_is_handed_over_alone(amqp_url):
    broker = make_broker(amqp_url)
    publish(broker, SEND_MESSAGE_ACTOR, send(1))
    publish(broker, SEND_MESSAGE_ACTOR, send(2), options={"retries": 1})
    publish(broker, SEND_MESSAGE_ACTOR, send(3))
    publish(broker, SEND_MESSAGE_ACTOR, send(4))
    consumer = broker.consume(PARTITION, timeout=TIMEOUT_MS)
    handed: list[list[str]] = []
    try:
        while sum(map(len, handed)) < 4:
            message = next(consumer)
            if message is not None:
                handed.append(command_ids(message))
                consumer.ack(message)
    finally:
        consumer.close()
    assert [cid for ids in handed for cid in ids] == ["c1", "c2", "c3", "c4"]
    assert ["c2"] in handed


def test_rejecting_a_bundle_dead_letters_each_of_its_messages_as_published(amqp_url):
    broker = make_broker(amqp_url)
    ids = [publish(broker, SEND_MESSAGE_ACTOR, send(n)) for n in range(6)]
    consumer = broker.consume(PARTITION, timeout=TIMEOUT_MS)
    rejected: Bundle | None = None
    try:
        while rejected is None:
            message = next(consumer)
            if message is None:
                continue
            if isinstance(message, Bundle):
                rejected = message
                consumer.nack(message)
            else:
                consumer.ack(message)  # the first may come alone, before the rest arrived
    finally:
        consumer.close()
    dead = [m.message_id for m in rejected.parts]
    start = ids.index(dead[0])
    assert len(dead) > 1 and dead == ids[start : start + len(dead)]  # consecutive, in queue order
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        found = []
        while (got := channel.basic_get(xq_name(PARTITION), auto_ack=True))[0] is not None:
            found.append(dramatiq.Message.decode(got[2]))
    finally:
        connection.close()
    assert [m.message_id for m in found] == dead
    assert [m.actor_name for m in found] == [SEND_MESSAGE_ACTOR] * len(dead)  # unchanged, not the bundle
    assert all(uuid.UUID(m.message_id) for m in found)
