"""The operator console in a real browser: a WhatsApp message from the fake Twilio appears live in
the inbox, the operator takes the conversation over and replies by hand, the fake Twilio receives
exactly that one message, and the console shows its delivery status moving to sent and delivered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import expect

from tests.support import isolation
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_providers import FakeTwilio
from tests.support.isolation import ADMIN_TOKEN
from tests.support.pages import sign_in_with_token
from tests.support.twilio_webhooks import post_twilio
from tests.support.web_stack import WebStackOptions, dev_token, start_web_stack

ADMIN = {"x-admin-token": ADMIN_TOKEN}
MODEL_KEY = "sk-test-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio(auth_token=isolation.TWILIO_AUTH_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
async def fake_model() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=MODEL_KEY)  # classifies every message: pricing_question, hot
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
def web_stack(iso, stack_env, fake_twilio, fake_model) -> Iterator:
    """Two ingress nodes + chat, outbound and ai pools in a vhost of their own, talking to the fakes."""
    vhost = f"{iso.vhost}_console"
    isolation.create_vhost(vhost)
    env = {
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "TWILIO_ACCOUNT_SID": fake_twilio.account_sid,
        "TWILIO_API_BASE_URL": fake_twilio.url,
        "OPENAI_BASE_URL": fake_model.url,
        "OPENAI_API_KEY": MODEL_KEY,
        "AI_MODEL": "fake-model",
    }
    stack = start_web_stack(stack_env, WebStackOptions(queues="chat outbound ai", env=env))
    try:
        yield stack
    finally:
        stack.processes.stop_all()
        isolation.delete_vhost(vhost)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_an_operator_takes_over_and_replies_to_a_whatsapp_message(
    web_stack, fake_twilio, http, new_page, screenshot
):
    tenant_id, number, contact = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}", "+34612345678"
    async with http.post(
        web_stack.url("/api/admin/tenants"),
        headers=ADMIN,
        json={
            "tenantId": tenant_id,
            "name": "Shop",
            "channels": [{"channel": "twilio_whatsapp", "address": number}],
        },
    ) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        web_stack.url(f"/api/admin/tenants/{tenant_id}/grant"),
        headers=ADMIN,
        json={"credits": 3, "reason": "t", "idempotencyKey": "k"},
    ) as r:
        assert r.status == 201

    # Olga signs in with the console's own dev-token form; Pablo, a second operator, by token.
    olga = await new_page()
    await olga.goto(web_stack.url("/console"))
    await olga.get_by_label("User id").fill(uid("olga"))
    await olga.get_by_label("Display name").fill("Olga")
    await olga.get_by_label("Role").select_option("operator")
    await olga.get_by_label("Tenant").fill(tenant_id)
    await olga.get_by_role("button", name="Sign in").click()
    await expect(olga.get_by_test_id("who")).to_have_text(f"Olga · operator of {tenant_id}")
    await expect(olga.get_by_text("No conversations yet")).to_be_visible()
    await expect(olga.locator("#connection")).to_have_text("Connected")
    pablo = await new_page()
    await sign_in_with_token(
        pablo,
        web_stack.url("/console", node=1),
        await dev_token(http, web_stack, uid("pablo"), "Pablo", role="operator", tenant=tenant_id),
    )
    await expect(pablo.locator("#connection")).to_have_text("Connected")

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
    status, _, _ = await post_twilio(http, web_stack.url("/webhooks/twilio"), inbound)
    assert status == 200

    item = olga.get_by_test_id("conversation-list").get_by_role("button").filter(has_text="Marta")
    await expect(item).to_be_visible()  # live, from conversationUpdated on the tenant channel
    await expect(item.get_by_test_id("channel")).to_have_text("WhatsApp")
    await expect(item.get_by_test_id("preview")).to_have_text("¿Hacen envíos a Sevilla?")
    await expect(item.get_by_test_id("lead")).to_have_text("hot")  # the AI classification, live
    await expect(item.get_by_test_id("intent")).to_have_text("pricing_question")
    await screenshot(olga, "operator-console-inbox")

    await item.click()
    messages = olga.get_by_test_id("conversation-messages")
    await expect(messages.locator(".msg.kind-inbound .msg-text")).to_have_text(["¿Hacen envíos a Sevilla?"])
    reply_box = olga.get_by_label("Reply")
    await expect(reply_box).to_be_disabled()
    await olga.get_by_role("button", name="Take over").click()
    await expect(olga.get_by_test_id("holder")).to_contain_text("You have taken over this conversation")
    await expect(reply_box).to_be_enabled()
    pablo_item = pablo.get_by_test_id("conversation-list").get_by_role("button").filter(has_text="Marta")
    await expect(pablo_item.get_by_test_id("taken-over-by")).to_have_text("Taken over by Olga")

    await reply_box.fill("Sí, en 48 horas.")
    await reply_box.press("Enter")
    sent = messages.locator(".msg.kind-outbound").filter(has_text="Sí, en 48 horas.")
    await expect(sent.get_by_test_id("delivery-status")).to_have_text("sent")
    (request,) = fake_twilio.accepted()
    assert request.fields["To"] == f"whatsapp:{contact}" and request.fields["From"] == f"whatsapp:{number}"
    assert request.fields["Body"] == "Sí, en 48 horas."

    callback = {
        "MessageSid": request.provider_id,
        "MessageStatus": "delivered",
        "AccountSid": fake_twilio.account_sid,
        "To": f"whatsapp:{contact}",
        "From": f"whatsapp:{number}",
    }
    status, _, _ = await post_twilio(http, web_stack.url("/webhooks/twilio"), callback)
    assert status == 200
    await expect(sent.get_by_test_id("delivery-status")).to_have_text("delivered")
    await expect(reply_box).to_have_value("")
    await screenshot(olga, "operator-console-after-reply")

    # A reload rebuilds the conversation from its history, statuses included.
    await olga.reload()
    await olga.get_by_test_id("conversation-list").get_by_role("button").filter(has_text="Marta").click()
    await expect(messages.locator(".msg.kind-outbound").get_by_test_id("delivery-status")).to_have_text(["delivered"])
    await asyncio.sleep(0.5)
    assert len(fake_twilio.requests) == 1  # sent exactly once


async def test_an_admin_picks_a_tenant_and_reads_its_inbox(web_stack, fake_twilio, http, new_page, screenshot):
    tenant_id, number = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}"
    async with http.post(
        web_stack.url("/api/admin/tenants"),
        headers=ADMIN,
        json={
            "tenantId": tenant_id,
            "name": "Tienda",
            "channels": [{"channel": "twilio_whatsapp", "address": number}],
        },
    ) as r:
        assert r.status == 201, await r.text()
    inbound = {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": fake_twilio.account_sid,
        "From": "whatsapp:+34699000111",
        "To": f"whatsapp:{number}",
        "Body": "Quiero dos cajas",
        "ProfileName": "Luis",
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    status, _, _ = await post_twilio(http, web_stack.url("/webhooks/twilio"), inbound)
    assert status == 200

    page = await new_page()
    await sign_in_with_token(
        page, web_stack.url("/console"), await dev_token(http, web_stack, uid("root"), role="admin")
    )
    await expect(page.get_by_test_id("who")).to_contain_text("admin")
    await page.get_by_role("tab", name="Inbox").click()
    await page.get_by_label("Inbox of tenant").select_option(tenant_id)
    item = page.get_by_test_id("conversation-list").get_by_role("button").filter(has_text="Luis")
    await expect(item.get_by_test_id("preview")).to_have_text("Quiero dos cajas")
    await item.click()
    await expect(page.get_by_test_id("conversation-messages").locator(".msg-text")).to_have_text(["Quiero dos cajas"])
    await expect(page.get_by_role("button", name="Take over")).to_be_visible()
    await screenshot(page, "operator-console-admin-inbox")
