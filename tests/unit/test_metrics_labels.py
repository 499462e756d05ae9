"""Worker metrics report a chat partition's queues under the chat capability's names."""

from dramatiq import Message

from workers.middleware.metrics import _labels, queue_names, reported_as


def test_a_partitions_queues_are_reported_as_chats():
    assert [reported_as(q) for q in ("chat.p2", "chat.p2.DQ", "chat.p2.XQ")] == ["chat", "chat.DQ", "chat.XQ"]
    assert [reported_as(q) for q in ("chat", "chat.XQ", "billing.DQ")] == ["chat", "chat.XQ", "billing.DQ"]


def test_every_partition_is_scraped():
    assert {"chat.p0", "chat.p3.DQ", "chat.p3.XQ", "chain.XQ"} <= set(queue_names())


def test_a_partitions_message_is_counted_as_chats():
    message = Message(queue_name="chat.p1.DQ", actor_name="chat_send_batch", args=(), kwargs={}, options={})
    assert _labels(message) == ("chat", "chat_send_batch")
