"""What a node's result stream loses or repeats never reaches its sockets that way (issue 15,
point 2; ingress/room_sequencer.py): a room message missing from the stream is read back from
PostgreSQL and sent in seq order before the next one; a message a socket already has is not sent
again; after its Redis subscription is cut, a node sends what was published meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis.asyncio

from infra import messages
from infra.redis_clients import socketio_manager
from schemas.channels import room_channel
from tests.support import isolation
from tests.support.clients import ChatClient
from tests.support.rooms import room_of_two

SETTLE_S = 1.0


def seqs(client: ChatClient, room: str) -> list[int]:
    return [m["seq"] for m in client.events["newMessage"] if m["roomId"] == room]


async def store_unpublished(pool, room: str, user_id: str, text: str) -> dict:
    """A message committed as a worker would, whose results never reached Redis."""
    message_id = str(uuid.uuid4())
    payload = {
        "messageId": message_id,
        "id": message_id,
        "roomId": room,
        "userId": user_id,
        "username": user_id,
        "message": text,
        "words": 1,
        "timestamp": int(time.time() * 1000),
        "kind": "user",
    }
    async with pool.acquire() as conn, conn.transaction():
        await messages.store_many(conn, [messages.NewRow(message_id, room, user_id, 1, payload, payload["timestamp"])])
        await conn.execute(  # its applied command, as the worker's unit of work records it
            "INSERT INTO inbox (command_id, kind, user_id, status, result) VALUES ($1, 'chat.send_message', $2,"
            " 'applied', $3)",
            f"lost:{message_id}",
            user_id,
            {"message_id": message_id, "emits": [], "follow_ups": []},
        )
    return payload


async def test_a_message_missing_from_the_stream_is_read_back_before_the_next(stack, http, clients, ledger):
    room, sender, watcher = await room_of_two(http, stack, clients, credits=10)
    await sender.send(room, "uno")
    await watcher.wait_count("newMessage", 1)
    lost = await store_unpublished(ledger, room, sender.user_id, "perdido")
    await sender.send(room, "tres")
    for client in (sender, watcher):
        await client.wait_count("newMessage", 3)
    await asyncio.sleep(SETTLE_S)
    for client in (sender, watcher):
        assert seqs(client, room) == [1, 2, 3]
        assert client.events["newMessage"][1]["messageId"] == lost["messageId"]


async def test_a_message_published_again_is_not_sent_to_a_socket_twice(stack, http, clients, iso):
    room, sender, watcher = await room_of_two(http, stack, clients, credits=10)
    await sender.send(room, "una vez")
    (first,) = await watcher.wait_count("newMessage", 1)
    manager = socketio_manager(isolation.REDIS_BASE, f"{iso.key_prefix}:socketio", write_only=True)
    try:  # as a redelivered command whose mark was lost would: the very same message, again
        await manager.emit_many([("newMessage", first, room_channel(room)), ("newMessage", first, room_channel(room))])
    finally:
        await manager.redis.aclose()
    await sender.send(room, "otra")
    await watcher.wait_count("newMessage", 2)
    await asyncio.sleep(SETTLE_S)
    assert seqs(watcher, room) == [1, 2] and seqs(sender, room) == [1, 2]


async def test_messages_published_while_a_nodes_subscription_was_cut_reach_its_sockets(stack, http, clients):
    room, sender, watcher = await room_of_two(http, stack, clients, credits=10)
    killer = redis.asyncio.Redis.from_url(isolation.REDIS_BASE)
    cutting = True

    async def cut_subscriptions() -> int:
        cuts = 0
        while cutting:
            cuts += await killer.client_kill_filter(_type="pubsub")
            await asyncio.sleep(0.01)
        return cuts

    cutter = asyncio.create_task(cut_subscriptions())
    try:
        acks = []
        for n in range(60):
            acks.append(await sender.send(room, f"mensaje {n}"))
            await asyncio.sleep(0.02)
    finally:
        cutting = False
        cuts = await cutter
        await killer.aclose()
    assert cuts > 10 and [a["status"] for a in acks] == ["accepted"] * 60
    for client in (sender, watcher):
        await client.wait_count("newMessage", 60, timeout=30)
    await asyncio.sleep(SETTLE_S)
    for client in (sender, watcher):
        assert seqs(client, room) == list(range(1, 61))  # each once, in order
    logs = "".join(node.log() for node in stack.nodes)
    assert '"room.backfilled"' in logs and '"redis.resubscribed"' in logs
