"""Bad input gets a clear error to the sender only; the connection and the processes stay up."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import socketio

from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid
from tests.support.processes import Processes


@pytest.mark.parametrize(
    "auth",
    [None, {}, {"token": "not-a-jwt"}, {"token": make_token("x", ttl_s=-120)}, {"token": 42}],
    ids=["no-auth", "no-token", "garbage", "expired", "wrong-type"],
)
async def test_bad_tokens_are_refused_as_unauthorized(stack, auth):
    client = socketio.AsyncClient(reconnection=False)
    errors: list = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(f"http://127.0.0.1:{stack.ports[0]}", auth=auth, transports=["websocket"], wait_timeout=5)
    assert errors and errors[0]["message"] == "unauthorized"


async def test_a_token_signed_with_another_secret_is_refused(stack):
    import jwt

    client = socketio.AsyncClient(reconnection=False)
    errors: list = []
    client.on("connect_error", lambda data: errors.append(data))
    forged = jwt.encode({"sub": "admin", "role": "admin"}, "some-other-secret-that-is-long-enough", algorithm="HS256")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(f"http://127.0.0.1:{stack.ports[0]}", auth={"token": forged}, wait_timeout=5)
    assert errors == [{"message": "unauthorized"}]


async def test_an_origin_outside_the_allow_list_is_refused(stack):
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            f"http://127.0.0.1:{stack.ports[0]}",
            auth={"token": make_token("o")},
            headers={"Origin": "https://evil.example"},
            transports=["websocket"],
            wait_timeout=5,
        )
    allowed = socketio.AsyncClient(reconnection=False)
    await allowed.connect(
        f"http://127.0.0.1:{stack.ports[0]}",
        auth={"token": make_token("o")},
        headers={"Origin": "http://localhost:5173"},
        transports=["websocket"],
        wait_timeout=5,
    )
    await allowed.disconnect()


async def test_malformed_payloads_are_rejected_and_the_socket_survives(stack, clients):
    user = ChatClient(uid("bad"))
    clients.append(user)
    await user.connect(stack.ports[0])
    room = uid("room")
    await user.join(room)
    cases = [
        ("sendMessage", {"roomId": room, "message": 5}),
        ("sendMessage", {"roomId": room}),
        ("sendMessage", "just a string"),
        ("sendMessage", {"roomId": room, "message": "x" * 4001}),
        ("sendMessage", {"roomId": room, "message": "nul \x00 byte"}),
        ("sendMessage", {"roomId": "never-joined", "message": "hola"}),
        ("sendMessage", {"roomId": "bad room!", "message": "hola"}),
        ("joinRoom", {"roomId": "x" * 129}),
        ("joinRoom", {"roomId": room, "roomType": "castle"}),
        ("mark-read", {"roomId": room, "messageId": "not-a-uuid"}),
        ("leaveRoom", {"roomId": "never-joined"}),
    ]
    for event, payload in cases:
        ack = await user.sio.call(event, payload, timeout=5)
        assert ack["status"] == "rejected", (event, payload, ack)
        assert ack["error"]["code"] == "bad_request" and ack["error"]["message"], (event, payload, ack)
    assert not user.events["error"]  # answered in the acks, not twice

    # Without an ack callback (as the original clients emit), the error comes as an event.
    await user.sio.emit("sendMessage", {"roomId": room, "message": ["not", "text"]})
    error = await user.wait_for("error")
    assert error["code"] == "bad_request" and error["event"] == "sendMessage"
    await user.sio.emit("typing-start", {"roomId": "never-joined"})
    await user.wait_count("error", 2)

    ok = await user.send(room, "still here")
    assert ok["status"] == "accepted"
    await user.wait_for("newMessage", lambda m: m["messageId"] == ok["messageId"])


async def test_oversize_frames_close_only_that_connection(stack, clients):
    big, bystander = ChatClient(uid("big")), ChatClient(uid("by"))
    clients += [big, bystander]
    await big.connect(stack.ports[0])
    await bystander.connect(stack.ports[0])
    room = uid("room")
    await bystander.join(room)
    await big.sio.emit("sendMessage", {"roomId": room, "message": "x" * 200_000})
    await asyncio.sleep(1.0)
    assert not big.sio.connected  # the server drops a frame over its buffer limit
    ack = await bystander.send(room, "unaffected")
    assert ack["status"] == "accepted"
    health = stack.nodes[0].popen.poll()
    assert health is None


async def test_rate_limits_hold_across_nodes(stack_env, clients):
    procs = Processes({**stack_env, "RATE_LIMITS": "3/10s"})
    try:
        nodes = [procs.ingress(), procs.ingress()]
        user_id = uid("fast")
        a, b = ChatClient(user_id), ChatClient(user_id)
        clients += [a, b]
        await a.connect(nodes[0].port)
        await b.connect(nodes[1].port)
        room = uid("room")
        await a.join(room)
        await b.join(room)
        acks = [await (a if i % 2 else b).send(room, f"mensaje {i}") for i in range(5)]
        assert [x["status"] for x in acks] == ["accepted"] * 3 + ["rejected"] * 2
        limited = acks[3]
        assert limited["error"]["code"] == "rate_limited" and 0 < limited["retryAfterMs"] <= 10_000
    finally:
        procs.stop_all()


async def test_unknown_user_stats_and_bad_http_bodies(stack, http, admin_headers):
    async with http.get(stack.url(f"/api/credits/stats/{uuid.uuid4().hex}"), headers=admin_headers) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_user"
    for body in (
        {"credits": "10", "reason": "x", "idempotencyKey": "k"},
        {"credits": -1, "reason": "x", "idempotencyKey": "k"},
        {"credits": 1},
        "not json",
    ):
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        async with http.post(stack.url("/api/credits/grant/someone"), headers=admin_headers, **kwargs) as r:
            assert r.status == 400, body
            assert (await r.json())["error"]["code"] == "bad_request"
