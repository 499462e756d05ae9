"""Each message reaches each socket once, for clients that do not dedupe (issue 15, point 1).

A resend with the same ``clientMessageId``, a redelivered command and an operator's replay all
replay the command's stored outcome; its emits go out again only if they were never marked
published (workers/effects.py). The window left, a crash between the publish and its mark, is
shown by clearing the mark: then a replay publishes the message once more, and the nodes' seq
cursors keep it from the sockets that have it.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio

from tests.support import isolation
from tests.support.processes import ROOT
from tests.support.rooms import counts, room_of_two

SETTLE_S = 1.5  # long enough for a re-broadcast to arrive, were there one


async def replay_user(stack, user_id: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.replay",
        "--since",
        "2000-01-01",
        "--user",
        user_id,
        "--type",
        "chat.send_message",
        "--json",
        "--wait",
        "60",
        cwd=ROOT,
        env=stack.processes.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, out.decode() + err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_a_resend_with_the_same_client_message_id_is_acked_but_not_broadcast_again(stack, http, clients):
    room, sender, watcher = await room_of_two(http, stack, clients)
    acks = [await sender.send(room, "hola mundo", clientMessageId="once") for _ in range(3)]
    assert [a["status"] for a in acks] == ["accepted"] * 3 and len({a["messageId"] for a in acks}) == 1
    await watcher.wait_for("newMessage")
    await sender.wait_for("newMessage")
    await asyncio.sleep(SETTLE_S)
    assert counts(watcher) == counts(sender) == {acks[0]["messageId"]: 1}


async def test_an_operator_replay_broadcasts_nothing_already_delivered(stack, http, clients, ledger, iso):
    room, sender, watcher = await room_of_two(http, stack, clients)
    acks = [await sender.send(room, f"mensaje {n}") for n in range(5)]
    ids = {a["messageId"] for a in acks}
    await watcher.wait_count("newMessage", 5)
    result = await replay_user(stack, sender.user_id)
    assert (result["published"], result["no-op"], result["re-applied"]) == (5, 5, 0)
    await asyncio.sleep(SETTLE_S)
    assert counts(watcher) == counts(sender) == dict.fromkeys(ids, 1)

    # The window that remains: emits published but their mark lost (a crash in between). A replay
    # then publishes them once more, rather than risk that nobody got them; the nodes, which know
    # each socket has that seq, do not send it to anyone again (ingress/room_sequencer.py).
    lost = acks[0]["messageId"]
    await ledger.execute(
        "UPDATE inbox SET emitted_at = NULL"
        " WHERE command_id = (SELECT command_id FROM event_log WHERE payload->>'message_id' = $1)",
        lost,
    )
    listener = redis.asyncio.Redis.from_url(isolation.REDIS_BASE)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{iso.key_prefix}:socketio")
    try:
        await replay_user(stack, sender.user_id)
        async with asyncio.timeout(30):
            while (message := await pubsub.get_message(timeout=1.0)) is None or lost not in message["data"].decode():
                pass
    finally:
        await pubsub.aclose()
        await listener.aclose()
    await asyncio.sleep(SETTLE_S)
    assert counts(watcher) == counts(sender) == dict.fromkeys(ids, 1)
