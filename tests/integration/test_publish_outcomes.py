"""What a failed publish tells its sender, against the real RabbitMQ: "nothing was charged" only when
the command certainly never reached the broker (``unavailable`` when no broker can be reached),
``unconfirmed`` when it may have.

The fault is real and local: the publisher talks to RabbitMQ through a loopback TCP proxy
(tests/support/tcp_balancer.py) that the test pauses, as a stalled network would, after the
connection is up. The publish is written to the socket but its confirm cannot come back within
PUBLISH_TIMEOUT_S; when the proxy resumes, the broker gets the message and queues it, which is why
the sender must not be told that nothing was charged. Each test has its own vhost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence

import pytest

from infra.amqp import connect_first
from infra.publisher import BrokerUnavailable, CommandPublisher, PublishFailed, PublishUnconfirmed
from ingress.rate_limiter import RateDecision
from ingress.rejections import Rejected
from ingress.send_flusher import SendFlusher
from schemas.queues import CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.commands import chat_command
from tests.support.tcp_balancer import TcpBalancer

TIMEOUT_S = 1.0  # PUBLISH_TIMEOUT_S of the publisher under test


@pytest.fixture
def vhost(iso) -> Iterator[str]:
    name = f"{iso.vhost}_confirm_{uuid.uuid4().hex[:6]}"
    isolation.create_vhost(name)
    yield name
    isolation.delete_vhost(name)


def url(vhost: str, port: int = 5672) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/{vhost}"


async def ready_count(vhost: str) -> int:
    connection = await connect_first(url(vhost))
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(CHAT_QUEUE, passive=True)
        return declared.declaration_result.message_count or 0


async def wait_for_count(vhost: str, expected: int, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while await ready_count(vhost) != expected:
            await asyncio.sleep(0.05)


async def connected(publisher: CommandPublisher, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not publisher.connected:
            await asyncio.sleep(0.05)


class AllowAll:
    async def hit_many(self, hits: Sequence[tuple[str, str]]) -> list[RateDecision]:
        return [RateDecision(True) for _ in hits]


async def test_a_stalled_confirm_is_unconfirmed_and_the_message_may_still_be_queued(vhost):
    async with TcpBalancer([5672]) as proxy:
        publisher = CommandPublisher(url(vhost, proxy.port), (CHAT_QUEUE,), TIMEOUT_S, connection_name="test-stall")
        await publisher.start()
        flusher = SendFlusher(publisher, AllowAll(), max_batch=256)
        try:
            await connected(publisher)
            await flusher.send(chat_command("u", "r", 1, client_id="c1"))  # confirmed
            proxy.pause()
            # Published, then no confirm within the timeout: the outcome is unknown, not "failed".
            with pytest.raises(PublishUnconfirmed):
                await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 2, client_id="c2"))
            # Through the flusher, a batch of two: both senders hear "unconfirmed", never "nothing was charged".
            named, anonymous = chat_command("u", "r", 3, client_id="c3"), chat_command("u", "r", 4)
            answers = await asyncio.gather(flusher.send(named), flusher.send(anonymous), return_exceptions=True)
            assert [type(a) for a in answers] == [Rejected, Rejected]
            assert [a.code for a in answers] == ["unconfirmed", "unconfirmed"]
            assert "retry with the same clientMessageId: it is charged once" in answers[0].message
            assert "no clientMessageId, so a retry may be charged twice" in answers[1].message
            assert all("nothing was charged" not in a.message for a in answers)
            assert await ready_count(vhost) == 1
            proxy.resume()
            # The "unconfirmed" publishes reach the broker after all: the lone one and the batch.
            await wait_for_count(vhost, 3)
            await flusher.send(chat_command("u", "r", 5, client_id="c5"))  # the same connection confirms again
            await wait_for_count(vhost, 4)
        finally:
            await flusher.drain()
            await publisher.close()


async def test_a_connection_lost_after_the_publish_is_unconfirmed_and_one_never_sent_is_unavailable(vhost):
    async with TcpBalancer([5672]) as proxy:
        publisher = CommandPublisher(url(vhost, proxy.port), (CHAT_QUEUE,), TIMEOUT_S, connection_name="test-sever")
        await publisher.start()
        flusher = SendFlusher(publisher, AllowAll(), max_batch=256)
        try:
            await connected(publisher)
            proxy.pause()
            sent = asyncio.create_task(flusher.send(chat_command("u", "r", 1)))
            await asyncio.sleep(0.2)  # handed to the channel and written to the socket, held by the proxy
            proxy.backends = []  # from now on the broker is out of reach: no reconnection
            await proxy.sever()  # the connection breaks with the message in flight (here: lost)
            with pytest.raises(Rejected) as lost:
                await sent
            assert lost.value.code == "unconfirmed"
            assert "may still be delivered and charged" in lost.value.message
            # The publisher cannot reconnect, so a publish now certainly goes nowhere: only then is
            # the sender told that nothing was charged.
            proxy.resume()
            with pytest.raises(PublishFailed) as failed:
                await publisher.publish(CHAT_QUEUE, SEND_MESSAGE_ACTOR, chat_command("u", "r", 2))
            assert isinstance(failed.value, BrokerUnavailable)
            assert str(failed.value) == "not connected to RabbitMQ"
            with pytest.raises(Rejected) as refused:
                await flusher.send(chat_command("u", "r", 3, client_id="c3"))
            assert refused.value.code == "unavailable"
            assert refused.value.message == "RabbitMQ is unreachable; nothing was charged, retry in 1000 ms"
            assert refused.value.extra == {"retryAfterMs": 1000}
            assert await ready_count(vhost) == 0
        finally:
            await flusher.drain()
            await publisher.close()
