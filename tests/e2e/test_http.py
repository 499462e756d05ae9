"""HTTP on every ingress node: health, credit stats, admin grants, chat stats."""

from __future__ import annotations

import asyncio

from tests.support.admin_api import grant
from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid
from tests.support.processes import Processes


async def test_health_reports_ok(stack, http):
    for node in range(2):
        async with http.get(stack.url("/health", node)) as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ok" and body["service"] == "gatekeeper-ingress"
            assert body["uptime"] >= 0 and body["timestamp"] > 0


async def test_health_is_degraded_and_sends_fail_closed_without_rabbitmq(stack_env, http, clients):
    procs = Processes({**stack_env, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"})
    try:
        node = procs.ingress(require_healthy=False)
        async with http.get(f"http://127.0.0.1:{node.port}/health") as r:
            body = await r.json()
            assert r.status == 503 and body["status"] == "degraded" and "rabbitmq" in body["causes"]
        user = ChatClient(uid("nobroker"))
        clients.append(user)
        await user.connect(node.port)
        room = uid("room")
        await user.join(room)
        ack = await user.send(room, "hola")
        assert ack["status"] == "rejected" and ack["error"]["code"] == "unavailable"
        assert "nothing was charged" in ack["error"]["message"] and ack["retryAfterMs"] == 1000
    finally:
        procs.stop_all()


async def test_stats_are_for_that_user_or_an_admin(stack, http, admin_headers):
    user = uid("stat")
    await grant(http, stack, user, 3, "k")
    own = {"Authorization": f"Bearer {make_token(user)}"}
    other = {"Authorization": f"Bearer {make_token('someone-else')}"}
    admin_jwt = {"Authorization": f"Bearer {make_token('boss', role='admin')}"}
    for headers, status in ((own, 200), (admin_headers, 200), (admin_jwt, 200), (other, 403), ({}, 403)):
        async with http.get(stack.url(f"/api/credits/stats/{user}", 1), headers=headers) as r:
            assert r.status == status, headers
    async with http.get(stack.url(f"/api/credits/stats/{user}"), headers=own) as r:
        assert await r.json() == {
            "userId": user,
            "credits": 3,
            "wordsLeft": 0,
            "wordsUsedTotal": 0,
            "creditsChargedTotal": 0,
        }


async def test_grant_is_admin_only_and_idempotent(stack, http, admin_headers):
    user = uid("grant")
    body = {"credits": 4, "reason": "welcome", "idempotencyKey": "promo-1"}
    async with http.post(stack.url(f"/api/credits/grant/{user}"), json=body) as r:
        assert r.status == 403
    async with http.post(
        stack.url(f"/api/credits/grant/{user}"), json=body, headers={"x-admin-token": "wrong-token-value"}
    ) as r:
        assert r.status == 403
    async with http.post(stack.url(f"/api/credits/grant/{user}"), json=body, headers=admin_headers) as r:
        assert r.status == 201 and (await r.json())["credits"] == 4
    async with http.post(stack.url(f"/api/credits/grant/{user}", 1), json=body, headers=admin_headers) as r:
        assert r.status == 200 and (await r.json()) == {"userId": user, "applied": False, "credits": 4, "wordsLeft": 0}


async def test_reset_sets_the_balance(stack, http, admin_headers):
    user = uid("reset")
    await grant(http, stack, user, 10, "k")
    async with http.post(stack.url(f"/api/credits/reset/{user}"), json={"credits": 3}, headers=admin_headers) as r:
        assert r.status == 200 and (await r.json())["credits"] == 3
    async with http.post(stack.url(f"/api/credits/reset/{user}"), json={"credits": 3}) as r:
        assert r.status == 403


async def test_chat_stats_cover_every_node(stack, http, clients):
    before = await (await http.get(stack.url("/api/chat/stats"))).json()
    a, b = ChatClient(uid("s1")), ChatClient(uid("s2"))
    clients += [a, b]
    await a.connect(stack.ports[0])
    await b.connect(stack.ports[1])
    room = uid("room")
    await a.join(room)
    await b.join(room)
    ack = await a.send(room, "uno dos")
    await b.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"])
    # The worker counts a delivery just after it publishes the message, so poll for the count.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        after = await (await http.get(stack.url("/api/chat/stats", 1))).json()
        counted = (
            after["messagesDelivered"] >= before["messagesDelivered"] + 1
            and after["messagesAccepted"] >= before["messagesAccepted"] + 1  # ingress adds its counts ~1/s
        )
        if counted or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert after["messagesAccepted"] >= before["messagesAccepted"] + 1
    assert after["messagesDelivered"] >= before["messagesDelivered"] + 1
    assert set(after) == {"connections", "rooms", "messagesAccepted", "messagesDelivered", "messagesBlocked"}
