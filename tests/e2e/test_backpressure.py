"""Sends are refused with an honest ``overloaded`` once the chat workers fall behind (issue 15,
point 4; ingress/chat_backlog.py): with the chat pool stopped, a node accepts sends until enough
of them have waited past CHAT_BACKLOG_MAX_MS, then refuses new ones before publishing anything
(never stored, never charged), shows the wait in /metrics, and accepts again once a pool has
applied the backlog."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator

import pytest

from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.stacks import Stack

BACKLOG_MAX_MS = 500
LOOP_LAG_MAX_MS = 100
LOOP_STALL_S = 0.6
METRICS_TOKEN = "metrics-" + secrets.token_hex(8)


@pytest.fixture
def backlog_stack(iso, stack_env) -> Iterator[Stack]:
    vhost = f"{iso.vhost}_backlog"
    isolation.create_vhost(vhost)
    procs = Processes(
        {
            **stack_env,
            "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
            "RATE_LIMITS": "1000/1s",
            "CHAT_BACKLOG_MAX_MS": str(BACKLOG_MAX_MS),
            "SEND_MAX_LOOP_LAG_MS": str(LOOP_LAG_MAX_MS),
            "METRICS_TOKEN": METRICS_TOKEN,
        }
    )
    try:
        nodes = [procs.ingress()]
        yield Stack(procs, nodes, procs.workers("chat", processes=1, threads=2))
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def gauge(http, stack: Stack, name: str) -> float:
    async with http.get(stack.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as resp:
        text = await resp.text()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


async def sender_in_a_room(http, stack: Stack, clients, name: str) -> tuple[ChatClient, str]:
    """A user with 10 credits on the first node, in a new room, whose first send ("antes") was accepted."""
    user = ChatClient(uid(name))
    clients.append(user)
    room = uid("room")
    await grant(http, stack, user.user_id, 10, "g1")
    await user.connect(stack.ports[0])
    await user.join(room)
    assert (await user.send(room, "antes"))["status"] == "accepted"
    return user, room


async def test_a_node_refuses_sends_while_the_workers_are_behind_and_accepts_again_after(
    backlog_stack, http, clients, ledger
):
    stack = backlog_stack
    user, room = await sender_in_a_room(http, stack, clients, "busy")
    await user.wait_count("newMessage", 1)  # the workers' notices are seen: the bound applies

    stack.workers.terminate()  # no pool: what is published waits in the queue
    accepted, refused = [], None
    deadline = time.monotonic() + 30
    while refused is None and time.monotonic() < deadline:
        ack = await user.send(room, f"mensaje {len(accepted)}")
        if ack["status"] == "accepted":
            accepted.append(ack["messageId"])
            await asyncio.sleep(0.05)
        else:
            refused = ack
    assert refused is not None, f"{len(accepted)} sends accepted, none refused"
    assert refused["error"]["code"] == "overloaded" and "nothing was charged" in refused["error"]["message"]
    assert BACKLOG_MAX_MS <= refused["retryAfterMs"] <= 5000
    assert len(accepted) >= 8  # the stalled count: a few slow sends alone do not refuse
    assert await gauge(http, stack, "gatekeeper_ingress_chat_backlog_seconds") > BACKLOG_MAX_MS / 1000

    stack.workers = stack.processes.workers("chat", processes=1, threads=2)
    await user.wait_count("newMessage", 1 + len(accepted), timeout=60)
    deadline = time.monotonic() + 30
    while (ack := await user.send(room, "después"))["status"] != "accepted" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert ack["status"] == "accepted"
    await user.wait_count("newMessage", 2 + len(accepted))

    stored = await ledger.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room)
    assert stored == 2 + len(accepted)  # every accepted send, and none of the refused ones
    # Charged for exactly those: "antes" and "después" are one word each, "mensaje N" two.
    assert (await stats(http, stack, user.user_id))["wordsUsedTotal"] == 2 + 2 * len(accepted)


async def test_a_node_stalled_past_its_loop_lag_bound_refuses_sends_until_it_has_caught_up(
    backlog_stack, http, clients, ledger
):
    """A node whose event loop ran late (here: stopped with SIGSTOP for 0.6 s, as a node past its
    CPU, a long GC pause or a starved VM would be) refuses the sends it reads meanwhile with
    ``overloaded``, before publishing them, and accepts again once it runs on time."""
    stack = backlog_stack
    user, room = await sender_in_a_room(http, stack, clients, "stalled")

    node = stack.nodes[0]
    os.kill(node.pid, signal.SIGSTOP)
    try:
        waiting = asyncio.create_task(user.send(room, "durante la pausa"))  # read when the node resumes
        await asyncio.sleep(LOOP_STALL_S)
    finally:
        os.kill(node.pid, signal.SIGCONT)
    answers = [await waiting]
    answers += [await user.send(room, f"justo después {n}") for n in range(3)]
    refused = [a for a in answers if a["status"] == "rejected"]
    assert refused, answers
    for answer in refused:
        assert answer["error"]["code"] == "overloaded", answer
        assert "ms behind" in answer["error"]["message"] and "nothing was charged" in answer["error"]["message"]
        assert 100 <= answer["retryAfterMs"] <= 5000
    assert await gauge(http, stack, "gatekeeper_ingress_event_loop_lag_seconds") >= 0.0  # exported

    await asyncio.sleep(1.0)  # on time again
    assert (await user.send(room, "después"))["status"] == "accepted"
    texts = ["durante la pausa"] + [f"justo después {n}" for n in range(3)]
    accepted_texts = ["antes", "después"] + [
        t for t, a in zip(texts, answers, strict=True) if a["status"] == "accepted"
    ]
    await user.wait_count("newMessage", len(accepted_texts))
    stored = await ledger.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room)
    assert stored == len(accepted_texts)  # refused sends were never published
    words = sum(len(text.split()) for text in accepted_texts)
    assert (await stats(http, stack, user.user_id))["wordsUsedTotal"] == words
