"""Code written for the original Node Socket.IO server works unchanged with the npm socket.io-client v4.

Runs ``tests/js/seed_client.mjs`` (modelled on the original system's test client)
with Node against both ingress nodes of the real stack. CI runs
``npm ci --prefix tests/js`` before pytest.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid

import pytest

from tests.support.admin_api import grant
from tests.support.clients import make_token
from tests.support.node_js import JS_DIR, node_or_fail

SCRIPT = JS_DIR / "seed_client.mjs"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_original_socket_io_client_works_unchanged(stack, http, ledger):
    node = node_or_fail()
    alice, bob, room = uid("alice"), uid("bob"), uid("room")
    await grant(http, stack, alice, 5, uid("grant"))
    env = {
        **os.environ,
        "TOKEN_A": make_token(alice, "Alice"),
        "TOKEN_B": make_token(bob, "Bob"),
        "ROOM": room,
    }
    urls = [f"http://127.0.0.1:{port}" for port in stack.ports]

    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [node, str(SCRIPT), *urls],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"seed_client.mjs did not finish in 60 s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
    explain = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, explain

    lines = done.stdout.strip().splitlines()
    assert lines, explain
    print(lines[-1])  # what the Node client observed, for -s / -rP
    seen = json.loads(lines[-1])
    assert seen["ok"] is True, explain

    # A bad token is refused with the original server's error message.
    assert seen["unauthorized"]["message"] == "unauthorized"
    # Default transports (A, B): the handshake went over long-polling, then upgraded to websocket.
    # C (Bob's second socket) stays on long-polling and must receive everything too.
    transports = seen["transports"]
    assert all(t["openedOver"] == "polling" for t in transports.values()), transports
    assert transports["a"]["upgradedTo"] == transports["b"]["upgradedTo"] == "websocket", transports
    assert transports["c"]["upgradedTo"] is None, transports
    assert all(j["roomType"] == "group" and j["history"] == 0 for j in seen["roomJoined"].values())
    assert max(j["memberCount"] for j in seen["roomJoined"].values()) >= 2

    # Both sends (without and with an ack) reached the other node, attributed to the token's user.
    plain, acked = seen["received"]
    assert plain["content"] == plain["message"] == "Hello from test client!"
    assert acked["content"] == acked["message"] == "Hello from test client, with an ack!"
    for msg in (plain, acked):
        assert msg["userId"] == alice and msg["username"] == "Alice"
        assert msg["roomId"] == room and msg["id"] == msg["messageId"]
    assert seen["ack"] == {"status": "accepted", "messageId": acked["messageId"], "clientMessageId": None}
    assert plain["messageId"] != acked["messageId"]
    assert seen["receivedOverPolling"] == [plain["messageId"], acked["messageId"]]

    # A bad payload without an ack gets an `error` event; with an ack, a rejection; the socket stays up.
    assert seen["badRequest"]["code"] == "bad_request" and seen["badRequest"]["event"] == "sendMessage"
    assert seen["badRequestAck"]["status"] == "rejected"
    assert seen["badRequestAck"]["error"]["code"] == "bad_request"
    assert seen["stillConnected"] is True
