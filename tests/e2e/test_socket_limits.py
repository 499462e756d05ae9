"""Every socket event is bounded (issue 12, "Unbounded events" and "No connection limits").

Joins, typing and read marks run against the session stack with the default limits; the caps
(rooms, connections per user and IP, the unauthenticated-session timeout) against one more node
started with small ones so the tests stay short.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import socketio

from tests.support.admin_api import grant
from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid
from tests.support.processes import Proc
from tests.support.stacks import Stack

TYPING_INTERVAL_S = 2.0  # TYPING_INTERVAL_MS and READ_MARK_INTERVAL_MS defaults
READ_MARK_INTERVAL_S = 2.0
SMALL = {
    "SOCKET_MAX_ROOMS": "3",
    "SOCKET_MAX_PER_USER": "2",
    "SOCKET_MAX_PER_IP": "6",
    "SOCKET_AUTH_TIMEOUT_S": "1",
    "SOCKET_JOIN_LIMITS": "100/1s",
}


@pytest.fixture(scope="module")
def small_node(stack: Stack) -> Iterator[Proc]:
    """An ingress node of the same deployment, with small caps."""
    node = stack.processes.ingress(**SMALL)
    yield node
    node.terminate()


async def connected(clients: list[ChatClient], port: int, user: str | None = None) -> ChatClient:
    client = ChatClient(user or uid("user"))
    clients.append(client)
    return await client.connect(port)


async def refused(port: int, user: str) -> Any:
    """Connect and expect a refusal; returns the connect_error data."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            f"http://127.0.0.1:{port}", auth={"token": make_token(user)}, transports=["websocket"], wait_timeout=5
        )
    assert errors, "refused without a connect_error"
    return errors[0]


# --- joins ------------------------------------------------------------------------------------
async def test_a_join_flood_is_rate_limited_and_the_history_is_sent_once(stack, http, clients):
    alice, bob = ChatClient(uid("alice"), "Alice"), ChatClient(uid("bob"), "Bob")
    clients += [alice, bob]
    room = uid("room")
    await grant(http, stack, alice.user_id, 20, f"g-{alice.user_id}")
    await alice.connect(stack.ports[0])
    await bob.connect(stack.ports[0])
    await alice.join(room)
    heavy = "palabra " * 480  # 3,840 characters
    for _ in range(4):
        assert (await alice.send(room, heavy))["status"] == "accepted"
    await alice.wait_count("newMessage", 4)
    first = await bob.join(room)
    assert len(first["history"]) == 4

    acks = await asyncio.gather(*(bob.sio.call("joinRoom", {"roomId": room}, timeout=20) for _ in range(1000)))
    accepted = [a for a in acks if a["status"] == "accepted"]
    limited = [a for a in acks if a["status"] == "rejected"]
    assert len(accepted) + len(limited) == 1000
    assert all(a.get("alreadyJoined") for a in accepted)
    assert len(accepted) < 60, len(accepted)  # SOCKET_JOIN_LIMITS=5/1s,60/1m, the first join included
    assert {a["error"]["code"] for a in limited} == {"rate_limited"}
    assert all(0 < a["retryAfterMs"] <= 60_000 for a in limited)
    await bob.sio.call("joinRoom", {"roomId": uid("probe")}, timeout=10)  # all joins above are handled
    with_history = [j for j in bob.events["roomJoined"] if j["roomId"] == room and j["history"]]
    assert len(with_history) == 1  # the heavy history went out once, not once per join
    assert len([j for j in alice.events["userJoined"] if j["userId"] == bob.user_id]) == 1

    # Joining new rooms (each with its own history) is limited the same way.
    fresh = await asyncio.gather(*(bob.sio.call("joinRoom", {"roomId": uid("r")}, timeout=20) for _ in range(50)))
    assert sum(a["status"] == "accepted" for a in fresh) <= 5
    assert {a["error"]["code"] for a in fresh if a["status"] == "rejected"} == {"rate_limited"}


async def test_a_socket_can_be_in_a_bounded_number_of_rooms(small_node, clients):
    user = await connected(clients, small_node.port)
    rooms = [uid("room") for _ in range(4)]
    for room in rooms[:3]:
        assert (await user.sio.call("joinRoom", {"roomId": room}, timeout=10))["status"] == "accepted"
    over = await user.sio.call("joinRoom", {"roomId": rooms[3]}, timeout=10)
    assert over["status"] == "rejected" and over["error"]["code"] == "too_many_rooms" and over["limit"] == 3
    assert not [j for j in user.events["roomJoined"] if j["roomId"] == rooms[3]]
    # Leaving one frees a place; a re-join of a room the socket is in takes none.
    assert (await user.sio.call("leaveRoom", {"roomId": rooms[0]}, timeout=10))["status"] == "accepted"
    assert (await user.sio.call("joinRoom", {"roomId": rooms[3]}, timeout=10))["status"] == "accepted"
    assert (await user.sio.call("joinRoom", {"roomId": rooms[1]}, timeout=10))["alreadyJoined"] is True
    # Without an ack callback the refusal arrives as an error event.
    await user.sio.emit("joinRoom", {"roomId": rooms[0]})
    error = await user.wait_for("error", lambda e: e.get("event") == "joinRoom")
    assert error["code"] == "too_many_rooms" and error["limit"] == 3


# --- typing -----------------------------------------------------------------------------------
async def test_a_typing_flood_reaches_watchers_as_a_bounded_trickle(stack, clients):
    alice, bob = ChatClient(uid("alice"), "Alice"), ChatClient(uid("bob"), "Bob")
    clients += [alice, bob]
    room = uid("room")
    await alice.connect(stack.ports[0])
    await bob.connect(stack.ports[1])  # across nodes, through Redis
    await alice.join(room)
    await bob.join(room)

    started = time.monotonic()
    for i in range(5000):  # the original clients emit typing without an ack
        await bob.sio.emit("typing-start" if i % 2 == 0 else "typing-stop", {"roomId": room})
    last_ack = await bob.sio.call("typing-stop", {"roomId": room}, timeout=20)
    elapsed = time.monotonic() - started
    await asyncio.sleep(TYPING_INTERVAL_S + 1)  # anything held back has gone out by now

    seen = [e for e in alice.events["userTyping"] if e["userId"] == bob.user_id]
    bound = 2 * (math.ceil(elapsed / TYPING_INTERVAL_S) + 2)  # a start and a stop per interval
    assert 1 <= len(seen) <= bound, (len(seen), elapsed)
    assert seen[0]["typing"] is True and seen[-1]["typing"] is False  # the indicator does not stick
    assert all(e["roomId"] == room and e["username"] == "Bob" for e in seen)
    assert last_ack == {"status": "accepted"}  # dropped or not, the sender hears the same

    # A stop right after a shown start goes out at once.
    mark = len(alice.events["userTyping"])
    await bob.sio.emit("typing-start", {"roomId": room})
    await bob.sio.emit("typing-stop", {"roomId": room})
    got = await alice.wait_count("userTyping", mark + 2, timeout=10)
    assert [e["typing"] for e in got[mark:]] == [True, False]


# --- read marks -------------------------------------------------------------------------------
async def read_rows(ledger, user: str, expected: dict[str, int] | None = None) -> dict[str, int]:
    """The rows ``user``'s read marks left; with ``expected``, wait (bounded) for the event log to catch up."""
    deadline = time.monotonic() + 10
    while (rows := await _read_rows(ledger, user)) != expected and expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return rows


async def _read_rows(ledger, user: str) -> dict[str, int]:
    return {
        "inbox": await ledger.fetchval(
            "SELECT count(*) FROM inbox WHERE kind = 'chat.mark_read' AND user_id = $1", user
        ),
        "event_log": await ledger.fetchval(
            "SELECT count(*) FROM event_log WHERE command_type = 'chat.mark_read' AND user_id = $1", user
        ),
        "read_marks": await ledger.fetchval("SELECT count(*) FROM read_marks WHERE user_id = $1", user),
    }


async def room_with_messages(stack, http, clients, count: int) -> tuple[ChatClient, ChatClient, str, list[str]]:
    alice, bob = ChatClient(uid("alice"), "Alice"), ChatClient(uid("bob"), "Bob")
    clients += [alice, bob]
    room = uid("room")
    await grant(http, stack, alice.user_id, 1, f"g-{alice.user_id}")
    await alice.connect(stack.ports[0])
    await bob.connect(stack.ports[1])
    await alice.join(room)
    await bob.join(room)
    ids = []
    for i in range(count):
        ack = await alice.send(room, f"mensaje {i}")
        assert ack["status"] == "accepted", ack
        ids.append(ack["messageId"])
        # Stored (the worker emits after its commit) before the next is sent: ids are in seq order.
        await bob.wait_for("newMessage", lambda m, sent=ack["messageId"]: m["messageId"] == sent)
    return alice, bob, room, ids


async def test_read_marks_for_unknown_messages_are_refused_and_store_nothing(stack, http, clients, ledger):
    alice, bob, room, [message_id] = await room_with_messages(stack, http, clients, 1)
    other_room = uid("room")
    await bob.join(other_room)

    random_ids = [str(uuid.uuid4()) for _ in range(40)] + [message_id]  # the last: a message of another room
    acks = [
        await bob.sio.call("mark-read", {"roomId": other_room if i == 40 else room, "messageId": m}, timeout=10)
        for i, m in enumerate(random_ids)
    ]
    assert all(a["status"] == "rejected" and a["error"]["code"] == "not_found" for a in acks), acks[:3]
    assert acks[0]["error"]["message"] == f"no message {random_ids[0]} in room {room}"
    flood = await asyncio.gather(
        *(bob.sio.call("mark-read", {"roomId": room, "messageId": str(uuid.uuid4())}, timeout=10) for _ in range(100))
    )
    assert {a["error"]["code"] for a in flood} <= {"not_found", "rate_limited"}
    assert any(a["error"]["code"] == "rate_limited" and a["retryAfterMs"] > 0 for a in flood)

    # Nothing was queued for them: the next real mark is the only one the worker ever sees.
    await asyncio.sleep(READ_MARK_INTERVAL_S)  # past any lookup window of the flood
    assert (await bob.sio.call("mark-read", {"roomId": room, "messageId": message_id}, timeout=10))["status"] == (
        "accepted"
    )
    await alice.wait_for("messageRead", lambda e: e["messageId"] == message_id)
    expected = {"inbox": 1, "event_log": 1, "read_marks": 1}
    assert await read_rows(ledger, bob.user_id, expected) == expected


async def test_repeated_read_marks_store_one_mark_per_interval(stack, http, clients, ledger):
    alice, bob, room, ids = await room_with_messages(stack, http, clients, 6)

    started = time.monotonic()
    for message_id in [*ids, *[ids[-1]] * 6, ids[0]]:  # every message in turn, the newest again, an older one
        assert (await bob.sio.call("mark-read", {"roomId": room, "messageId": message_id}, timeout=10)) == {
            "status": "accepted"
        }
    intervals = math.ceil((time.monotonic() - started) / READ_MARK_INTERVAL_S)  # 1 unless the machine crawls
    # The first mark at once, the newest of the rest when the interval ends.
    last = await alice.wait_for("messageRead", lambda e: e["messageId"] == ids[-1], timeout=15)
    assert last == {"roomId": room, "messageId": ids[-1], "userId": bob.user_id}
    await asyncio.sleep(READ_MARK_INTERVAL_S + 0.5)  # nothing more comes
    reads = [e["messageId"] for e in alice.events["messageRead"] if e["userId"] == bob.user_id]
    assert reads[0] == ids[0] and reads[-1] == ids[-1] and len(reads) <= 1 + intervals, reads
    stored = len(set(reads))  # a mark stored twice is one command (its id names the message)
    rows = await read_rows(ledger, bob.user_id, {"inbox": stored, "event_log": stored, "read_marks": 1})
    assert rows == {"inbox": stored, "event_log": stored, "read_marks": 1}
    mark = await ledger.fetchval("SELECT message_id::text FROM read_marks WHERE user_id = $1", bob.user_id)
    assert mark == ids[-1]


# --- connections ------------------------------------------------------------------------------
async def test_connections_per_user_are_capped(small_node, clients):
    user = uid("user")
    first = await connected(clients, small_node.port, user)
    await connected(clients, small_node.port, user)
    error = await refused(small_node.port, user)
    assert error["message"] == "too_many_connections"
    assert error["data"]["scope"] == "user" and error["data"]["limit"] == 2
    await connected(clients, small_node.port)  # another user is unaffected
    await first.close()  # a closed socket frees its place
    await asyncio.sleep(0.2)
    await connected(clients, small_node.port, user)


async def test_connections_per_ip_are_capped(small_node, clients):
    await asyncio.sleep(0.3)  # the previous test's sockets have closed; let the node handle it
    made = [await connected(clients, small_node.port) for _ in range(6)]
    error = await refused(small_node.port, uid("user"))
    assert error["message"] == "too_many_connections"
    assert error["data"]["scope"] == "ip" and error["data"]["limit"] == 6
    await made[0].close()
    await asyncio.sleep(0.2)
    await connected(clients, small_node.port)


async def open_polling_session(http: aiohttp.ClientSession, port: int) -> tuple[int, str]:
    """An Engine.IO handshake over long-polling that never sends Socket.IO's ``40``."""
    async with http.get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling") as resp:
        return resp.status, await resp.text()


async def test_unauthenticated_sessions_are_closed_after_the_timeout(small_node, http):
    port = small_node.port
    # Over websocket: the server closes it (SOCKET_AUTH_TIMEOUT_S=1; without it, ~45 s of pings).
    async with http.ws_connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket") as ws:
        opened = await ws.receive(timeout=5)
        assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{")
        started = time.monotonic()
        frames = []
        async with asyncio.timeout(10):
            async for msg in ws:  # ends when the server closes the connection
                frames.append(msg.data)
        assert frames in ([], ["1"]), frames  # at most Engine.IO's close packet
        assert time.monotonic() - started < 10

    # Over long-polling: the session is gone, its next poll is answered at once.
    status, body = await open_polling_session(http, port)
    assert status == 200 and body.startswith("0{"), body
    sid = json.loads(body[1:])["sid"]
    await asyncio.sleep(1.5)
    async with asyncio.timeout(10):  # without the timeout this poll hangs for the 25 s ping
        while True:
            async with http.get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling&sid={sid}") as resp:
                text = await resp.text()
            if resp.status == 400:
                break  # unknown session
            assert resp.status == 200 and text == "1", (resp.status, text)  # the close packet, then gone

    # Pending sessions also count against the IP cap (6): the seventh handshake is refused.
    opened_now = [await open_polling_session(http, port) for _ in range(6)]
    assert all(status == 200 for status, _ in opened_now), opened_now
    status, body = await open_polling_session(http, port)
    assert status == 401 and "too_many_connections" in body, (status, body)
    await asyncio.sleep(1.5)  # they time out and free their places
    assert (await open_polling_session(http, port))[0] == 200
