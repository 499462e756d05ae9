"""Ingress batching through real processes: many concurrent sends, far fewer AMQP messages.

One ingress node (so every send goes through one flusher) and a chat worker pool, in a vhost of
their own, logging JSON at INFO: each AMQP message the node publishes is one ``command.published``
line, a batch's listing its ``command_ids``. Every send must be acked, stored once, charged once
and delivered exactly once to every member of its room.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from schemas.commands import send_command_ids
from schemas.queues import CHAT_QUEUE, SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR, capability_of
from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.json_logs import having, json_lines
from tests.support.processes import Processes
from tests.support.stacks import Stack

ROOMS = 6
MEMBERS = 5  # per room, each sending SENDS_EACH messages at once
SENDS_EACH = 6


@pytest.fixture
def batch_stack(iso, stack_env) -> Iterator[Stack]:
    vhost = f"{iso.vhost}_batch"
    isolation.create_vhost(vhost)
    procs = Processes(
        {
            **stack_env,
            "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
            "RATE_LIMITS": "1000/1s",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
    )
    try:
        node = procs.ingress()
        workers = procs.workers("chat", processes=1, threads=4)
        yield Stack(procs, [node], workers)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def test_concurrent_sends_are_published_in_batches_and_delivered_exactly_once(batch_stack, http, clients, ledger):
    stack = batch_stack
    rooms = {uid("room"): [ChatClient(uid(f"u{r}m{m}")) for m in range(MEMBERS)] for r in range(ROOMS)}
    for members in rooms.values():
        clients.extend(members)
    await asyncio.gather(*(grant(http, stack, c.user_id, 3, "g") for c in clients))
    await asyncio.gather(*(c.connect(stack.ports[0]) for c in clients))
    for room, members in rooms.items():
        for client in members:
            await client.join(room)

    sends = [
        (room, client, f"c{n}") for room, members in rooms.items() for client in members for n in range(SENDS_EACH)
    ]
    text = " ".join(["palabra"] * 20)
    acks = await asyncio.gather(*(c.send(room, text, clientMessageId=cid) for room, c, cid in sends))
    assert [a["status"] for a in acks] == ["accepted"] * len(sends), [a for a in acks if a["status"] != "accepted"]
    assert [a["clientMessageId"] for a in acks] == [cid for _, _, cid in sends]
    sent_in = {room: {a["messageId"] for (r, _, _), a in zip(sends, acks, strict=True) if r == room} for room in rooms}

    # Delivered exactly once to every member of its room, and only there.
    per_room = MEMBERS * SENDS_EACH
    for room, members in rooms.items():
        for client in members:
            got = await client.wait_count("newMessage", per_room, lambda m, room=room: m["roomId"] == room, 60)
            assert Counter(m["messageId"] for m in got) == Counter(sent_in[room]), client.user_id
    await asyncio.sleep(1.0)  # a duplicate would have arrived by now
    for room, members in rooms.items():
        for client in members:
            ids = [m["messageId"] for m in client.events["newMessage"]]
            assert len(ids) == len(set(ids)) == per_room and set(ids) == sent_in[room]

    # Stored and charged once: 20 words each, one credit opened per sender.
    message_ids = [uuid.UUID(a["messageId"]) for a in acks]
    stored = await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = ANY($1::uuid[])", message_ids)
    assert stored == len(sends)
    for client in clients[:: MEMBERS + 1]:
        s = await stats(http, stack, client.user_id)
        assert (s["credits"], s["creditsChargedTotal"], s["wordsUsedTotal"]) == (2, 1, 20 * SENDS_EACH)

    # Far fewer AMQP messages than sends; each command in exactly one of them.
    published = [
        line
        for line in having(json_lines(stack.nodes[0]), event="command.published")
        if capability_of(line.get("queue", "")) == CHAT_QUEUE
    ]
    batches = [line for line in published if line["actor"] == SEND_BATCH_ACTOR]
    singles = [line for line in published if line["actor"] == SEND_MESSAGE_ACTOR]
    assert len(batches) + len(singles) == len(published)
    assert batches and len(published) <= len(sends) // 4, [len(line.get("command_ids", [1])) for line in published]
    carried = [cid for line in batches for cid in line["command_ids"]] + [line["command_id"] for line in singles]
    expected = [send_command_ids(client.user_id, cid)[0] for _, client, cid in sends]
    assert Counter(carried) == Counter(expected)
    for line in batches:
        assert line["command_id"].startswith("batch:") and line["command_type"] == "chat.send_batch"
        assert "user_id" not in line and "sid" not in line  # no sender's context on a batch's line
    # No per-message info line on the node's hot path.
    assert not having(json_lines(stack.nodes[0]), event="message.accepted")
