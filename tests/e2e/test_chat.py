"""Chat through the real system: two ingress nodes, a worker pool, RabbitMQ, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.ids import uid


async def test_clients_on_different_nodes_talk_in_one_room(stack, http, clients):
    alice, bob = ChatClient(uid("alice"), "Alice"), ChatClient(uid("bob"), "Bob")
    clients += [alice, bob]
    room = uid("room")
    await grant(http, stack, alice.user_id, 2, "g1")
    await alice.connect(stack.ports[0])
    await bob.connect(stack.ports[1], transports=["polling"])  # long-polling works too

    joined = await alice.join(room)
    assert joined == {"roomId": room, "roomType": "group", "memberCount": 1, "history": [], "lastSeq": 0}
    joined_b = await bob.join(room)
    assert joined_b["memberCount"] == 2
    assert await alice.wait_for("userJoined") == {"roomId": room, "userId": bob.user_id, "username": "Bob"}

    text = "Hola mundo, esto es una prueba <script>alert(1)</script> https://bezhas.com"
    ack = await alice.send(room, text, userId="mallory", username="Mallory")  # spoofed ids are ignored
    assert ack["status"] == "accepted"
    got = await bob.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"])
    assert got["userId"] == alice.user_id and got["username"] == "Alice"
    assert got["kind"] == "user" and got["roomId"] == room
    assert got["words"] == 10  # counted on the raw text: 6 words, script alert 1 script, never the URL
    assert "<script>" not in got["message"] and got["message"] == got["content"] and got["id"] == got["messageId"]
    assert got["creditInfo"] == {"charged": 1, "wordsLeft": 990}
    assert (await stats(http, stack, alice.user_id))["credits"] == 1

    # Typing is ephemeral but crosses nodes; read marks are stored and fan out.
    await bob.sio.emit("typing-start", {"roomId": room})
    assert await alice.wait_for("userTyping") == {
        "roomId": room,
        "userId": bob.user_id,
        "username": "Bob",
        "typing": True,
    }
    assert (await bob.sio.call("mark-read", {"roomId": room, "messageId": ack["messageId"]}))["status"] == "accepted"
    assert await alice.wait_for("messageRead") == {"roomId": room, "messageId": ack["messageId"], "userId": bob.user_id}

    # A client that reconnects gets the truth from history.
    late = ChatClient(uid("carol"))
    clients.append(late)
    await late.connect(stack.ports[1])
    history = (await late.join(room))["history"]
    assert [m["messageId"] for m in history] == [ack["messageId"]]

    left = await bob.sio.call("leaveRoom", {"roomId": room})
    assert left["status"] == "accepted"
    assert await bob.wait_for("roomLeft") == {"roomId": room}
    assert (await alice.wait_for("userLeft"))["userId"] == bob.user_id


async def test_credit_warning_then_error_then_grace(stack, http, clients):
    user = ChatClient(uid("dora"))
    other = ChatClient(uid("eve"))
    clients += [user, other]
    room = uid("room")
    await grant(http, stack, user.user_id, 1, "g1")
    await user.connect(stack.ports[0])
    await other.connect(stack.ports[1])
    await user.join(room)
    await other.join(room)

    first = await user.send(room, "w " * 990)
    warning = await user.wait_for("creditWarning")
    assert warning["credits"] == 0 and warning["wordsLeft"] == 10 and warning["wordsRemaining"] == 10
    await other.wait_for("newMessage", lambda m: m["messageId"] == first["messageId"])

    blocked = await user.send(room, "w " * 200, clientMessageId="too-long")
    assert blocked["status"] == "accepted"  # accepted by ingress; the worker decides
    error = await user.wait_for("creditError")
    assert error["code"] == "insufficient_credits" and error["messageId"] == blocked["messageId"]
    assert error["clientMessageId"] == "too-long" and error["required"] == 1
    assert (error["credits"], error["wordsLeft"]) == (0, 10) and error["rechargeUrl"] and error["message"]

    # 60 words: 10 from words_left, 50 uncovered within GRACE_WORDS: delivered free.
    graced = await user.send(room, "w " * 60)
    delivered = await other.wait_for("newMessage", lambda m: m["messageId"] == graced["messageId"])
    assert delivered["creditInfo"] == {"charged": 0, "wordsLeft": 0}
    await asyncio.sleep(0.3)
    assert not [m for m in other.events["newMessage"] if m["messageId"] == blocked["messageId"]]
    assert len(user.events["creditWarning"]) == 1  # at most once until the next top-up
    final = await stats(http, stack, user.user_id)
    assert (final["credits"], final["wordsLeft"], final["creditsChargedTotal"]) == (0, 0, 1)
    assert final["wordsUsedTotal"] == 1050


async def test_client_message_id_makes_a_send_idempotent(stack, http, clients):
    user = ChatClient(uid("fred"))
    clients.append(user)
    room = uid("room")
    await grant(http, stack, user.user_id, 5, "g1")
    await user.connect(stack.ports[0])
    await user.join(room)
    acks = [await user.send(room, "w " * 1500, clientMessageId="same") for _ in range(3)]
    assert len({a["messageId"] for a in acks}) == 1
    await user.wait_for("newMessage")
    await asyncio.sleep(1.0)
    assert {m["messageId"] for m in user.events["newMessage"]} == {acks[0]["messageId"]}
    s = await stats(http, stack, user.user_id)
    assert (s["credits"], s["creditsChargedTotal"], s["wordsUsedTotal"]) == (3, 2, 1500)
    rejoin = ChatClient(uid("fred-2"))
    clients.append(rejoin)
    await rejoin.connect(stack.ports[1])
    assert len((await rejoin.join(room))["history"]) == 1


async def test_fifty_concurrent_sends_charge_and_deliver_exactly_ten(stack, http, clients, ledger):
    user, watcher = ChatClient(uid("gina")), ChatClient(uid("hal"))
    clients += [user, watcher]
    room = uid("room")
    await grant(http, stack, user.user_id, 10, "g1")
    await user.connect(stack.ports[0])
    await watcher.connect(stack.ports[1])
    await user.join(room)
    await watcher.join(room)
    acks = await asyncio.gather(*(user.send(room, "w " * 1000) for _ in range(50)))
    assert all(a["status"] == "accepted" for a in acks)
    delivered = await watcher.wait_count("newMessage", 10)
    errors = await user.wait_count("creditError", 40)
    await asyncio.sleep(1.0)
    assert len({m["messageId"] for m in watcher.events["newMessage"]}) == 10 == len(delivered)
    assert len({e["messageId"] for e in errors}) == 40
    s = await stats(http, stack, user.user_id)
    assert (s["credits"], s["creditsChargedTotal"], s["wordsUsedTotal"]) == (0, 10, 10_000)


async def test_zero_word_messages_are_free(stack, http, clients):
    user = ChatClient(uid("ivan"))
    clients.append(user)
    room = uid("room")
    await user.connect(stack.ports[0])
    await user.join(room)
    ack = await user.send(room, "😀 🎉 !!!")
    got = await user.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"])
    assert got["words"] == 0 and got["creditInfo"] == {"charged": 0, "wordsLeft": 0}


async def test_direct_rooms_admit_only_their_members(stack, clients):
    a, b, c = ChatClient(uid("ann")), ChatClient(uid("ben")), ChatClient(uid("cat"))
    clients += [a, b, c]
    for client in (a, b, c):
        await client.connect(stack.ports[0])
    room = f"dm:{a.user_id}:{b.user_id}"
    assert (await a.join(room, roomType="direct"))["roomType"] == "direct"
    assert (await b.join(room))["memberCount"] == 2
    denied = await c.sio.call("joinRoom", {"roomId": room, "roomType": "group"})
    assert denied["status"] == "rejected" and denied["error"]["code"] == "forbidden"
    assert not [j for j in c.events["roomJoined"] if j["roomId"] == room]
