"""A WhatsApp conversation end to end, through real processes and the real twilio library:

inbound webhook → stored conversation → operator event → operator reply → outbound send
→ provider status callback → operator sees the delivery.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support import isolation
from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.twilio_webhooks import post_twilio, twilio_env


@pytest.fixture
def channel_stack(iso, stack_env, fake_twilio):
    """Ingress + chat pool + outbound pool in a vhost of their own, talking to the fake Twilio."""
    vhost = f"{iso.vhost}_flow"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        **twilio_env(fake_twilio),
    }
    procs = Processes(env)
    try:
        node = procs.ingress()
        procs.workers("chat", processes=1, threads=4)
        procs.workers("outbound", processes=1, threads=8)
        yield node
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def test_whatsapp_inbound_to_operator_reply_to_delivery(
    channel_stack, fake_twilio, http, admin_headers, clients, ledger
):
    base = f"http://127.0.0.1:{channel_stack.port}"
    tenant_id, number, contact = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}", "+34612345678"
    async with http.post(
        f"{base}/api/admin/tenants",
        headers=admin_headers,
        json={
            "tenantId": tenant_id,
            "name": "Shop",
            "channels": [{"channel": "twilio_whatsapp", "address": number}],
        },
    ) as r:
        assert r.status == 201
    async with http.post(
        f"{base}/api/admin/tenants/{tenant_id}/grant",
        headers=admin_headers,
        json={"credits": 3, "reason": "t", "idempotencyKey": "k"},
    ) as r:
        assert r.status == 201

    operator = ChatClient(uid("olga"), "Olga")
    clients.append(operator)
    await operator.connect(
        channel_stack.port, token=make_token(operator.user_id, "Olga", role="operator", tenant=tenant_id)
    )

    inbound = {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": fake_twilio.account_sid,
        "From": f"whatsapp:{contact}",
        "To": f"whatsapp:{number}",
        "Body": "¿Hacen envíos a Sevilla?",
        "ProfileName": "Marta",
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    status, _, body = await post_twilio(http, f"{base}/webhooks/twilio", inbound)
    assert status == 200 and "<Response" in body

    update = await operator.wait_for("conversationUpdated", timeout=30)
    assert (update["contact"], update["contactName"], update["channel"]) == (contact, "Marta", "twilio_whatsapp")
    room = update["roomId"]
    history = (await operator.join(room))["history"]
    assert [(m["kind"], m["message"]) for m in history] == [("inbound", "¿Hacen envíos a Sevilla?")]

    ack = await operator.send(room, "Sí, en 48 horas.")
    assert ack["status"] == "accepted"
    sent = await operator.wait_for("messageStatus", lambda s: s["messageId"] == ack["messageId"], timeout=30)
    assert sent["status"] == "sent"
    (request,) = fake_twilio.accepted()
    assert request.fields["To"] == f"whatsapp:{contact}" and request.fields["From"] == f"whatsapp:{number}"
    assert request.fields["Body"] == "Sí, en 48 horas."
    assert request.fields["StatusCallback"] == f"{isolation.PUBLIC_BASE_URL}/webhooks/twilio"

    callback = {
        "MessageSid": request.provider_id,
        "MessageStatus": "delivered",
        "AccountSid": fake_twilio.account_sid,
        "To": f"whatsapp:{contact}",
        "From": f"whatsapp:{number}",
    }
    status, _, _ = await post_twilio(http, f"{base}/webhooks/twilio", callback)
    assert status == 200
    delivered = await operator.wait_for(
        "messageStatus", lambda s: s["messageId"] == ack["messageId"] and s["status"] == "delivered", timeout=30
    )
    assert delivered["roomId"] == room
    row = await ledger.fetchrow(
        "SELECT status, provider_message_id FROM outbound_messages WHERE message_id = $1", uuid.UUID(ack["messageId"])
    )
    assert tuple(row) == ("delivered", request.provider_id)
    await asyncio.sleep(0.5)
    assert len(fake_twilio.requests) == 1  # sent exactly once
