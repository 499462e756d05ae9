"""The operator's inbox through real processes: the conversation list API, taking a conversation over
from the AI agent (which then stays quiet) and handing it back, seen by two operators."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import aiohttp

from schemas.commands import inbound_ids, takeover_command_id
from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid
from tests.support.twilio_webhooks import post_twilio


async def new_tenant(http: aiohttp.ClientSession, base: str, headers: dict, *, auto_reply: bool) -> tuple[str, str]:
    tenant_id, number = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}"
    async with http.post(
        f"{base}/api/admin/tenants",
        headers=headers,
        json={
            "tenantId": tenant_id,
            "name": "Shop",
            "autoReply": auto_reply,
            "channels": [{"channel": "twilio_whatsapp", "address": number}],
        },
    ) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        f"{base}/api/admin/tenants/{tenant_id}/grant",
        headers=headers,
        json={"credits": 5, "reason": "t", "idempotencyKey": "k"},
    ) as r:
        assert r.status == 201
    return tenant_id, number


async def whatsapp(http, base: str, fake_twilio, number: str, contact: str, text: str) -> str:
    """Post a signed inbound WhatsApp webhook; returns our message id for it."""
    sid = f"SM{uuid.uuid4().hex}"
    inbound = {
        "MessageSid": sid,
        "AccountSid": fake_twilio.account_sid,
        "From": f"whatsapp:{contact}",
        "To": f"whatsapp:{number}",
        "Body": text,
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    status, _, _ = await post_twilio(http, f"{base}/webhooks/twilio", inbound)
    assert status == 200
    return inbound_ids("twilio", sid)[1]


async def until(check, timeout: float = 30.0):
    """Poll ``check`` (plain or async) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.2)


async def test_the_conversation_list_is_for_the_tenants_operators_and_admins(
    ai_stack, fake_twilio, http, admin_headers, ledger
):
    node, _ = ai_stack
    base = f"http://127.0.0.1:{node.port}"
    tenant_id, number = await new_tenant(http, base, admin_headers, auto_reply=False)
    other_tenant, _ = await new_tenant(http, base, admin_headers, auto_reply=False)
    for i in range(3):
        await whatsapp(http, base, fake_twilio, number, f"+3460000020{i}", f"Hola número {i}")
    url = f"{base}/api/tenants/{tenant_id}/conversations"
    own = {"Authorization": f"Bearer {make_token(uid('op'), role='operator', tenant=tenant_id)}"}

    async def three() -> list | None:
        async with http.get(url, headers=own) as r:
            assert r.status == 200
            body = await r.json()
        return body["conversations"] if len(body["conversations"]) == 3 else None

    listed = await until(three)
    assert [c["lastMessage"] for c in listed] == ["Hola número 2", "Hola número 1", "Hola número 0"]
    first = listed[0]
    assert first["roomId"] == f"conv:{tenant_id}:{first['conversationId']}"
    assert (first["channel"], first["contact"], first["takenOverBy"]) == ("twilio_whatsapp", "+34600000202", None)

    async with http.get(f"{url}?limit=2", headers=admin_headers) as r:
        assert r.status == 200
        page = await r.json()
    assert [c["conversationId"] for c in page["conversations"]] == [c["conversationId"] for c in listed[:2]]
    async with http.get(url, params={"limit": "2", "cursor": page["nextCursor"]}, headers=admin_headers) as r:
        rest = await r.json()
    assert [c["conversationId"] for c in rest["conversations"]] == [listed[2]["conversationId"]]
    assert rest["nextCursor"] is None

    admin_jwt = {"Authorization": f"Bearer {make_token(uid('root'), role='admin')}"}
    foreign = {"Authorization": f"Bearer {make_token(uid('op'), role='operator', tenant=other_tenant)}"}
    user = {"Authorization": f"Bearer {make_token(uid('user'))}"}
    for headers, status in [
        (admin_jwt, 200),
        (foreign, 403),
        (user, 403),
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
    ]:
        async with http.get(url, headers=headers) as r:
            assert r.status == status, (headers, await r.text())
    async with http.get(f"{base}/api/tenants/{uid('nobody')}/conversations", headers=admin_headers) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_tenant"
    for query in ({"cursor": "bm9wZQ"}, {"limit": "0"}, {"limit": "many"}):
        async with http.get(url, params=query, headers=own) as r:
            assert r.status == 400, query


async def test_taking_over_silences_the_agent_until_handed_back(
    ai_stack, fake_model, fake_twilio, http, admin_headers, clients, ledger
):
    node, _ = ai_stack
    base = f"http://127.0.0.1:{node.port}"
    tenant_id, number = await new_tenant(http, base, admin_headers, auto_reply=True)
    olga, pablo, mallory = ChatClient(uid("olga"), "Olga"), ChatClient(uid("pablo"), "Pablo"), ChatClient(uid("m"))
    clients.extend([olga, pablo, mallory])
    for op in (olga, pablo):
        await op.connect(node.port, token=make_token(op.user_id, op.name, role="operator", tenant=tenant_id))
    await mallory.connect(node.port)
    contact = "+34600333444"

    def sends() -> int:
        return len(fake_twilio.accepted())

    first = await whatsapp(http, base, fake_twilio, number, contact, "¿Tienen la talla 42?")
    await until(lambda: sends() == 1)  # the agent answered the first message
    update = await olga.wait_for("conversationUpdated", timeout=30)
    room = update["roomId"]
    assert update["takenOverBy"] is None and first

    refused = await mallory.sio.call("takeOverConversation", {"roomId": room}, timeout=10)
    assert refused["status"] == "rejected" and refused["error"]["code"] == "forbidden"
    ack = await olga.sio.call("takeOverConversation", {"roomId": room, "requestId": "r1"}, timeout=10)
    assert ack == {"status": "accepted", "roomId": room, "release": False}
    for op in (olga, pablo):  # both operators see who holds it
        held = await op.wait_for("conversationUpdated", lambda u: u.get("takenOverBy") == olga.user_id, timeout=30)
        assert held["takenOverByName"] == "Olga" and held["roomId"] == room
    takeover_id = takeover_command_id(olga.user_id, "r1")
    logged = await until(
        lambda: ledger.fetchrow(
            "SELECT actor_name, status, user_id, tenant_id FROM event_log WHERE command_id = $1", takeover_id
        )
    )
    assert tuple(logged) == ("channel_take_over", "applied", olga.user_id, tenant_id)
    await pablo.sio.call("takeOverConversation", {"roomId": room}, timeout=10)
    conflict = await pablo.wait_for("error", lambda e: e.get("event") == "takeOverConversation", timeout=30)
    assert conflict["code"] == "conflict" and conflict["takenOverBy"] == olga.user_id and "Olga" in conflict["message"]

    second = await whatsapp(http, base, fake_twilio, number, contact, "¿Y en azul?")

    async def classified() -> bool:
        status = await ledger.fetchval("SELECT status FROM inbox WHERE command_id = $1", f"classify:{second}")
        return status is not None

    await until(classified)  # the worker has processed the second message and its follow-ups
    await asyncio.sleep(1.0)  # grace for an auto-reply that must not come
    assert await ledger.fetchval("SELECT count(*) FROM inbox WHERE command_id = $1", f"ai:{second}") == 0
    assert sends() == 1

    await olga.join(room)
    reply = await olga.send(room, "Sí, también en azul.")
    assert reply["status"] == "accepted"
    await until(lambda: sends() == 2)
    assert fake_twilio.accepted()[-1].fields["Body"] == "Sí, también en azul."
    history = (await pablo.join(room))["history"]  # what was sent carries its last known delivery status
    assert [m["kind"] for m in history] == ["inbound", "ai", "inbound", "outbound"]
    assert [m.get("deliveryStatus") in ("queued", "sending", "sent") for m in history] == [False, True, False, True]

    before = list(pablo.events["conversationUpdated"])
    await olga.sio.call("takeOverConversation", {"roomId": room, "release": True}, timeout=10)
    await pablo.wait_for(
        "conversationUpdated",
        lambda u: "takenOverBy" in u and u["takenOverBy"] is None and all(u is not b for b in before),
        timeout=30,
    )
    third = await whatsapp(http, base, fake_twilio, number, contact, "Perfecto, gracias")
    await until(lambda: sends() == 3)  # handed back: the agent answers again
    assert await ledger.fetchval("SELECT status FROM inbox WHERE command_id = $1", f"ai:{third}") == "applied"
