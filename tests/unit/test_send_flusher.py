"""The ingress send flusher's batching (ingress/send_flusher.py), with a fake publisher and limiter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis.exceptions
import structlog

from infra.publisher import BrokerUnavailable, PublishFailed, PublishUnconfirmed
from ingress.rate_limiter import RateDecision
from ingress.rejections import Rejected
from ingress.send_flusher import SendFlusher
from schemas.base import Command
from schemas.commands import SendChatBatch, SendChatMessage
from schemas.queues import CHAT_QUEUE, SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR


def send(n: int, user: str = "alice", *, client_message_id: str | None = "") -> SendChatMessage:
    return SendChatMessage(
        command_id=f"msg:{user}:{n}",
        message_id=f"00000000-0000-4000-8000-{n:012d}",
        user_id=user,
        username=user.title(),
        room_id="lobby",
        message=f"hello {n}",
        client_message_id=str(n) if client_message_id == "" else client_message_id,
        accepted_at_ms=1_700_000_000_000,
    )


class FakePublisher:
    """Holds each publish until the test releases it (``gate``), and fails those it is told to."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, Command]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = 0
        self.failure: type[PublishFailed] = PublishFailed
        self.contexts: list[dict] = []
        self.down = False  # no broker: wait_connected refuses

    async def wait_connected(self) -> None:
        if self.down:
            raise BrokerUnavailable("not connected to RabbitMQ")

    async def publish(self, queue: str, actor: str, command: Command) -> None:
        self.contexts.append(structlog.contextvars.get_contextvars())
        self.published.append((queue, actor, command))
        await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise self.failure("no confirm")

    def command_ids(self) -> list[list[str]]:
        """Per publish, the command ids it carried."""
        out = []
        for _, actor, command in self.published:
            if actor == SEND_BATCH_ACTOR:
                assert isinstance(command, SendChatBatch)
                out.append([c.command_id for c in command.commands])
            else:
                out.append([command.command_id])
        return out


class FakeLimiter:
    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse = refuse
        self.calls: list[list[str]] = []

    async def hit_many(self, hits: Sequence[tuple[str, str]]) -> list[RateDecision]:
        self.calls.append([user for user, _ in hits])
        return [RateDecision(False, 700) if user in self.refuse else RateDecision(True) for user, _ in hits]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_flusher_publishes_a_lone_send_at_once_as_itself():
    publisher, limiter = FakePublisher(), FakeLimiter()
    flusher = SendFlusher(publisher, limiter, max_batch=256)
    with structlog.contextvars.bound_contextvars(command_id="msg:alice:1", socket_event="sendMessage"):
        await asyncio.wait_for(flusher.send(send(1)), 1)
    ((queue, actor, command),) = publisher.published
    assert (queue, actor, command.command_id) == (CHAT_QUEUE, SEND_MESSAGE_ACTOR, "msg:alice:1")
    # Published in its sender's log context: its command.published line is the one it had before batching.
    assert publisher.contexts[0]["socket_event"] == "sendMessage"
    assert limiter.calls == [["alice"]]
    assert not flusher.flushing and flusher.waiting == 0


async def test_sends_during_a_flush_wait_for_the_next_one_which_carries_them_all():
    publisher, limiter = FakePublisher(), FakeLimiter()
    flusher = SendFlusher(publisher, limiter, max_batch=256)
    publisher.gate.clear()
    first = asyncio.create_task(flusher.send(send(0)))
    await settle()
    assert publisher.command_ids() == [["msg:alice:0"]]  # in flight, unconfirmed
    later = [asyncio.create_task(flusher.send(send(n, f"u{n}"))) for n in range(1, 6)]
    await settle()
    assert len(publisher.published) == 1 and flusher.waiting == 5  # nothing else published meanwhile
    assert not first.done()
    publisher.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 1)
    assert publisher.command_ids() == [["msg:alice:0"], [f"msg:u{n}:{n}" for n in range(1, 6)]]
    queue, actor, batch = publisher.published[1]
    assert (queue, actor) == (CHAT_QUEUE, SEND_BATCH_ACTOR)
    assert isinstance(batch, SendChatBatch) and batch.command_id.startswith("batch:")
    # One rate-limit call per flush, for every sender in it.
    assert limiter.calls == [["alice"], [f"u{n}" for n in range(1, 6)]]
    # The batch is published in a context of its own: no sender's command_id on its lines.
    assert "command_id" not in publisher.contexts[1]


async def test_sends_arriving_together_share_one_flush():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    await asyncio.wait_for(asyncio.gather(*(flusher.send(send(n)) for n in range(10))), 1)
    assert publisher.command_ids() == [[f"msg:alice:{n}" for n in range(10)]]


async def test_a_flush_takes_at_most_max_batch_and_the_rest_follow_in_order():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=4)
    publisher.gate.clear()
    tasks = [asyncio.create_task(flusher.send(send(n))) for n in range(11)]
    await settle()
    assert [len(ids) for ids in publisher.command_ids()] == [4]
    publisher.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert [len(ids) for ids in publisher.command_ids()] == [4, 4, 3]
    assert [i for ids in publisher.command_ids() for i in ids] == [f"msg:alice:{n}" for n in range(11)]


async def test_a_failing_publish_rejects_exactly_its_batch():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    publisher.gate.clear()
    publisher.fail_next = 1
    first = [asyncio.create_task(flusher.send(send(n))) for n in range(3)]  # the failing flush
    await settle()
    second = [asyncio.create_task(flusher.send(send(n, "bob"))) for n in range(3, 5)]
    await settle()
    publisher.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*first, *second, return_exceptions=True), 1)
    for result in results[:3]:
        assert isinstance(result, Rejected) and result.code == "internal"
        assert result.message == "the message could not be queued; nothing was charged, retry"
    assert results[3:] == [None, None]
    assert len(publisher.published) == 2
    assert len({id(r) for r in results[:3]}) == 3  # one exception per sender


async def test_rate_limited_senders_are_refused_before_the_publish():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(refuse=frozenset({"mallory"})), max_batch=256)
    sends = [send(1, "alice"), send(2, "mallory"), send(3, "bob"), send(4, "mallory")]
    results = await asyncio.wait_for(asyncio.gather(*(flusher.send(s) for s in sends), return_exceptions=True), 1)
    assert results[0] is None and results[2] is None
    for refused in (results[1], results[3]):
        assert isinstance(refused, Rejected) and refused.code == "rate_limited"
        assert refused.message == "too many messages; retry in 700 ms"
        assert refused.extra == {"retryAfterMs": 700}
    assert publisher.command_ids() == [["msg:alice:1", "msg:bob:3"]]


async def test_a_batch_whose_senders_are_all_refused_publishes_nothing():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(refuse=frozenset({"mallory"})), max_batch=256)
    with pytest.raises(Rejected):
        await asyncio.wait_for(flusher.send(send(1, "mallory")), 1)
    assert publisher.published == [] and flusher.flushes == 0


async def test_a_rate_limiter_out_of_reach_refuses_its_batch_unavailable_before_publishing():
    class BrokenLimiter:
        async def hit_many(self, hits):
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    publisher = FakePublisher()
    flusher = SendFlusher(publisher, BrokenLimiter(), max_batch=256)
    results = await asyncio.wait_for(
        asyncio.gather(*(flusher.send(send(n)) for n in range(2)), return_exceptions=True), 1
    )
    assert [r.code for r in results] == ["unavailable", "unavailable"]
    assert all("Redis (rate limiting) is unreachable; nothing was charged" in r.message for r in results)
    assert all(r.extra == {"retryAfterMs": 1000} for r in results)
    assert publisher.published == []
    assert not flusher.flushing


async def test_without_a_broker_a_batch_is_refused_unavailable_before_it_is_rate_limited():
    publisher, limiter = FakePublisher(), FakeLimiter()
    publisher.down = True
    flusher = SendFlusher(publisher, limiter, max_batch=256)
    results = await asyncio.gather(*(flusher.send(send(n)) for n in range(3)), return_exceptions=True)
    assert [r.code for r in results] == ["unavailable"] * 3
    assert all("RabbitMQ is unreachable; nothing was charged" in r.message for r in results)
    assert limiter.calls == [] and publisher.published == []
    publisher.down = False
    await flusher.send(send(9))
    assert publisher.command_ids() == [[send(9).command_id]]


async def test_drain_waits_for_the_flush_in_flight_and_the_next():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    publisher.gate.clear()
    tasks = [asyncio.create_task(flusher.send(send(0)))]
    await settle()
    tasks.append(asyncio.create_task(flusher.send(send(1))))
    await settle()
    drained = asyncio.create_task(flusher.drain())
    await settle()
    assert not drained.done()
    publisher.gate.set()
    await asyncio.wait_for(drained, 1)
    assert all(t.done() and t.result() is None for t in tasks)
    assert len(publisher.published) == 2
    await asyncio.wait_for(flusher.drain(), 1)  # idle: returns at once


async def test_a_sender_that_went_away_does_not_break_the_others():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    publisher.gate.clear()
    first = asyncio.create_task(flusher.send(send(0)))
    await settle()
    gone = asyncio.create_task(flusher.send(send(1)))
    stays = asyncio.create_task(flusher.send(send(2)))
    await settle()
    gone.cancel()
    publisher.gate.set()
    await asyncio.wait_for(asyncio.gather(first, stays), 1)
    assert gone.cancelled()


async def test_sends_beyond_the_bound_are_refused_at_once_and_never_published():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=2, max_in_flight=5)
    publisher.gate.clear()
    within = [asyncio.create_task(flusher.send(send(n))) for n in range(5)]  # 2 in the flush, 3 waiting
    await settle()
    assert flusher.in_flight == 5
    for n in (5, 6):
        with pytest.raises(Rejected) as refused:
            await asyncio.wait_for(flusher.send(send(n)), 1)  # at once: nothing waits for a flush
        assert refused.value.code == "overloaded"
        retry = refused.value.extra["retryAfterMs"]
        assert 100 <= retry <= 5_000
        assert (
            refused.value.message
            == f"too many messages in flight on this node; nothing was charged, retry in {retry} ms"
        )
    publisher.gate.set()
    await asyncio.wait_for(asyncio.gather(*within), 1)
    sent = [i for ids in publisher.command_ids() for i in ids]
    assert sent == [f"msg:alice:{n}" for n in range(5)]  # the refused ones were never published
    assert flusher.in_flight == 0
    await asyncio.wait_for(flusher.send(send(7)), 1)  # room again


async def test_retry_after_counts_the_flushes_queued_ahead_at_the_recent_flush_duration():
    class SlowPublisher(FakePublisher):
        async def publish(self, queue: str, actor: str, command: Command) -> None:
            await asyncio.sleep(0.3)
            await super().publish(queue, actor, command)

    publisher = SlowPublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=2, max_in_flight=7)
    await asyncio.wait_for(asyncio.gather(*(flusher.send(send(n)) for n in range(2))), 2)  # one ~0.3 s flush
    publisher.gate.clear()
    tasks = [asyncio.create_task(flusher.send(send(n))) for n in range(2, 9)]  # 2 flushing, 5 waiting: 1 + 3 ahead
    await settle()
    with pytest.raises(Rejected) as refused:
        await flusher.send(send(9))
    # 4 flushes ahead, each as long as recent ones (one measured so far: ~0.3 s).
    assert 4 * 290 <= refused.value.extra["retryAfterMs"] <= 4 * 400
    publisher.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert SendFlusher(FakePublisher(), FakeLimiter(), max_batch=1).retry_after_ms() == 100  # the floor


async def test_the_retry_after_is_capped_when_a_flush_hangs():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=1, max_in_flight=1)
    publisher.gate.clear()
    stuck = asyncio.create_task(flusher.send(send(0)))
    await settle()
    flusher._flush_started -= 60  # the flush under way has taken a minute so far
    with pytest.raises(Rejected) as refused:
        await flusher.send(send(1))
    assert refused.value.extra["retryAfterMs"] == 5_000
    publisher.gate.set()
    await asyncio.wait_for(stuck, 1)


def test_the_bound_must_allow_one_send():
    with pytest.raises(ValueError):
        SendFlusher(FakePublisher(), FakeLimiter(), max_batch=1, max_in_flight=0)


async def test_an_unconfirmed_publish_answers_unconfirmed_never_nothing_charged():
    publisher = FakePublisher()
    publisher.failure, publisher.fail_next = PublishUnconfirmed, 1
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    named, anonymous = send(1), send(2, client_message_id=None)
    results = await asyncio.wait_for(
        asyncio.gather(flusher.send(named), flusher.send(anonymous), return_exceptions=True), 1
    )
    assert all(isinstance(r, Rejected) and r.code == "unconfirmed" for r in results)
    assert all("nothing was charged" not in r.message for r in results)
    assert results[0].message == (
        "the message was sent to the queue but not confirmed, so it may still be delivered and charged; "
        "retry with the same clientMessageId: it is charged once"
    )
    assert results[1].message == (
        "the message was sent to the queue but not confirmed, so it may still be delivered and charged; "
        "it had no clientMessageId, so a retry may be charged twice"
    )
    assert [r.extra for r in results] == [{"messageId": named.message_id}, {"messageId": anonymous.message_id}]
    assert publisher.command_ids() == [["msg:alice:1", "msg:alice:2"]]


async def test_a_lone_unconfirmed_send_is_answered_unconfirmed_too():
    publisher = FakePublisher()
    publisher.failure, publisher.fail_next = PublishUnconfirmed, 1
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    with pytest.raises(Rejected) as rejected:
        await asyncio.wait_for(flusher.send(send(1, client_message_id=None)), 1)
    assert rejected.value.code == "unconfirmed" and "may be charged twice" in rejected.value.message


async def test_a_publish_that_certainly_failed_is_internal_and_nothing_charged():
    publisher = FakePublisher()
    publisher.fail_next = 1  # PublishFailed: not connected, channel closed before sending, nack
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=256)
    with pytest.raises(Rejected) as rejected:
        await asyncio.wait_for(flusher.send(send(1, client_message_id=None)), 1)
    assert rejected.value.code == "internal"
    assert rejected.value.message == "the message could not be queued; nothing was charged, retry"


async def test_a_flush_cancelled_mid_publish_answers_unconfirmed_and_the_waiting_not_queued():
    publisher = FakePublisher()
    flusher = SendFlusher(publisher, FakeLimiter(), max_batch=1)
    publisher.gate.clear()
    publishing = asyncio.create_task(flusher.send(send(0)))
    await settle()
    waiting = asyncio.create_task(flusher.send(send(1)))
    await settle()
    assert flusher._task is not None
    flusher._task.cancel()
    results = await asyncio.wait_for(asyncio.gather(publishing, waiting, return_exceptions=True), 1)
    assert [r.code for r in results] == ["unconfirmed", "internal"]
    assert "nothing was charged" in results[1].message
