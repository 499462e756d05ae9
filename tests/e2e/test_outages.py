"""Broker and Redis outages are answered, not hung (issue 15, point 5).

A node and its chat pool reach RabbitMQ (or the node reaches Redis) through a loopback TCP proxy
that the test owns (tests/support/tcp_balancer.py). Taking the service out of the proxy and
cutting every connection through it is, for the processes, exactly a broker or Redis that went
away: connections break and new ones are refused. While it lasts, a send is answered
``unavailable`` with ``retryAfterMs`` within about a second, before anything is published or
charged; once the service is back, the processes reconnect on their own and sends are accepted and
delivered again within seconds, each message once, the ledger exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.rooms import counts
from tests.support.stacks import Stack
from tests.support.tcp_balancer import TcpBalancer

ANSWER_WITHIN_S = 1.5  # "within about a second" (the node waits 1 s for a failover), plus slack
RECOVER_WITHIN_S = 10.0


def port_of(url: str) -> int:
    return urlsplit(url).port or {"amqp": 5672, "redis": 6379}[urlsplit(url).scheme]


def through(url: str, proxy: TcpBalancer) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")).geturl()


@pytest.fixture
async def amqp_proxy() -> AsyncIterator[TcpBalancer]:
    async with TcpBalancer([port_of(isolation.AMQP_BASE)]) as proxy:
        yield proxy


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpBalancer]:
    async with TcpBalancer([port_of(isolation.REDIS_BASE)]) as proxy:
        yield proxy


async def start_stack(env: dict[str, str], **node_env: str) -> Stack:
    """One node and a chat pool, started off the event loop: the proxies run on it."""
    procs = Processes({**env, "RATE_LIMITS": "1000/1s"})
    node = await asyncio.to_thread(procs.ingress, **node_env)
    workers = await asyncio.to_thread(procs.workers, "chat", 1, 4)
    return Stack(procs, [node], workers)


async def outage(proxy: TcpBalancer) -> list[int]:
    """The service goes away: every connection through the proxy breaks, new ones are refused."""
    backends, proxy.backends = proxy.backends, []
    await proxy.sever()
    return backends


async def node_sees_the_loss(http, stack: Stack, service: str) -> None:
    """Wait until the node's /health reports ``service`` down. A send racing the cut itself may go out
    on the dying connection and be answered ``unconfirmed`` (it may have reached the broker), which
    is right; the outage's answer is what comes once the node knows."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        async with http.get(stack.url("/health")) as resp:
            if service in (await resp.json()).get("causes", {}):
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the node did not notice {service} was gone within 5 s")


async def answer_timed(client: ChatClient, room: str, text: str) -> tuple[dict, float]:
    started = time.monotonic()
    answer = await client.send(room, text)
    return answer, time.monotonic() - started


async def accepted_again(client: ChatClient, room: str) -> tuple[str, float]:
    """Send until a send is accepted: its message id, and how long it took."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < RECOVER_WITHIN_S:
        n += 1
        text = f"de vuelta {n}"
        answer = await client.send(room, text, clientMessageId=f"back-{n}")
        if answer["status"] == "accepted":
            return answer["messageId"], time.monotonic() - started
        assert answer["error"]["code"] == "unavailable", answer
        await asyncio.sleep(answer["retryAfterMs"] / 4000)  # a quarter of the advice: measure the recovery
    raise AssertionError(f"no send accepted within {RECOVER_WITHIN_S} s of the service's return")


async def room_with_watcher(http, stack: Stack, clients: list[ChatClient]) -> tuple[str, ChatClient, ChatClient]:
    sender, watcher = ChatClient(uid("sender")), ChatClient(uid("watcher"))
    clients += [sender, watcher]
    room = uid("room")
    await grant(http, stack, sender.user_id, 5, "g1")
    for client in (sender, watcher):
        await client.connect(stack.ports[0])
        await client.join(room)
    return room, sender, watcher


def assert_refused_unavailable(answer: dict, took_s: float, service: str) -> None:
    assert answer["status"] == "rejected", answer
    assert answer["error"]["code"] == "unavailable", answer
    assert service in answer["error"]["message"]
    assert "nothing was charged" in answer["error"]["message"]
    assert answer["retryAfterMs"] == 1000
    assert took_s < ANSWER_WITHIN_S, f"answered after {took_s:.2f} s"


async def test_a_broker_outage_is_answered_unavailable_and_the_node_and_pool_come_back(
    stack_env, iso, http, clients, amqp_proxy
):
    vhost = f"{iso.vhost}_outage"
    isolation.create_vhost(vhost)
    stack = await start_stack({**stack_env, "AMQP_URL": through(f"{isolation.AMQP_BASE}/{vhost}", amqp_proxy)})
    try:
        room, sender, watcher = await room_with_watcher(http, stack, clients)
        before = await sender.send(room, "antes del corte")
        assert before["status"] == "accepted"
        await watcher.wait_count("newMessage", 1)

        backends = await outage(amqp_proxy)
        await node_sees_the_loss(http, stack, "rabbitmq")
        answers = [await answer_timed(sender, room, f"durante {n}") for n in range(5)]
        for answer, took in answers:
            assert_refused_unavailable(answer, took, "RabbitMQ")
        # Past the first second the node knows the broker is gone: each refusal is immediate.
        assert max(took for _, took in answers[1:]) < 0.5, answers

        amqp_proxy.backends = backends  # the broker is back
        back, took = await accepted_again(sender, room)
        assert took < RECOVER_WITHIN_S
        delivered = await watcher.wait_count("newMessage", 2, timeout=RECOVER_WITHIN_S)
        assert delivered[-1]["messageId"] == back
        await asyncio.sleep(1.0)
        assert set(counts(watcher).values()) == {1}  # each message once: nothing refused was applied
        assert len(counts(watcher)) == 2
        used = (await stats(http, stack, sender.user_id))["wordsUsedTotal"]
        assert used == len("antes del corte".split()) + len("de vuelta 1".split())
    finally:
        await asyncio.to_thread(stack.processes.stop_all)
        isolation.delete_vhost(vhost)


async def test_a_redis_outage_fails_the_rate_limits_closed_and_fan_out_resumes(stack_env, http, clients, redis_proxy):
    stack = await start_stack(stack_env, REDIS_URL=through(isolation.REDIS_BASE, redis_proxy))
    try:
        room, sender, watcher = await room_with_watcher(http, stack, clients)
        assert (await sender.send(room, "antes"))["status"] == "accepted"
        await watcher.wait_count("newMessage", 1)

        backends = await outage(redis_proxy)
        for n in range(3):
            answer, took = await answer_timed(sender, room, f"sin limites {n}")
            assert_refused_unavailable(answer, took, "Redis (rate limiting)")

        redis_proxy.backends = backends
        back, took = await accepted_again(sender, room)
        assert took < RECOVER_WITHIN_S
        # The node resubscribed to its results by itself: the message reaches the watcher, once.
        delivered = await watcher.wait_count("newMessage", 2, timeout=RECOVER_WITHIN_S)
        assert delivered[-1]["messageId"] == back
        await asyncio.sleep(1.0)
        assert set(counts(watcher).values()) == {1}
        used = (await stats(http, stack, sender.user_id))["wordsUsedTotal"]
        assert used == 1 + len("de vuelta 1".split())
    finally:
        await asyncio.to_thread(stack.processes.stop_all)
