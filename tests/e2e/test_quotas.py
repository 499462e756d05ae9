"""Daily quotas on the real stack: Socket.IO clients get quotaExceeded and nothing is charged.

The plans here (tests.support.stripe_objects.PLANS_JSON): Free allows 2 messages and 10 AI tokens
a day, Starter 3 messages and 1000 tokens.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.words import count_words
from schemas.commands import agent_reply_ids
from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.fake_openai import FakeOpenAI
from tests.support.ids import uid
from tests.support.plans_stack import plans_stack, post_stripe
from tests.support.stripe_objects import event_json, subscription

MODEL_KEY = "sk-test-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def fake_model():
    fake = FakeOpenAI(api_key=MODEL_KEY)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
def quota_stack(iso, stack_env, fake_model):
    ai = {"OPENAI_BASE_URL": fake_model.url, "OPENAI_API_KEY": MODEL_KEY, "AI_MODEL": "fake-model"}
    with plans_stack(iso, stack_env, "quotas", ("chat", "ai", "billing"), **ai) as stack:
        yield stack


async def user_in_room(stack, http, clients, credits: int = 5) -> tuple[ChatClient, str]:
    user = ChatClient(uid("quota"))
    clients.append(user)
    await grant(http, stack, user.user_id, credits, "g")
    await user.connect(stack.node.port)
    room = uid("room")
    await user.join(room)
    return user, room


def tomorrow_utc() -> str:
    return f"{(datetime.now(UTC) + timedelta(days=1)).date().isoformat()}T00:00:00Z"


async def test_over_the_message_quota_the_sender_gets_quota_exceeded_and_pays_nothing(quota_stack, http, clients):
    user, room = await user_in_room(quota_stack, http, clients)
    for text in ("hola mundo", "otra vez"):
        ack = await user.send(room, text)
        await user.wait_for("newMessage", lambda m, a=ack: m["messageId"] == a["messageId"])
    before = await stats(http, quota_stack, user.user_id)
    ack = await user.send(room, "a " * 1500)  # 1500 words: would cost 2 credits
    assert ack["status"] == "accepted"
    notice = await user.wait_for("quotaExceeded")
    assert (notice["kind"], notice["limit"], notice["used"], notice["plan"]) == ("messages", 2, 2, "free")
    assert notice["resetsAt"] == tomorrow_utc() and notice["messageId"] == ack["messageId"]
    assert notice["roomId"] == room
    await asyncio.sleep(0.5)
    assert not [m for m in user.events["newMessage"] if m["messageId"] == ack["messageId"]]
    assert await stats(http, quota_stack, user.user_id) == before


async def test_a_subscription_raises_the_quota(quota_stack, http, clients, ledger):
    user, room = await user_in_room(quota_stack, http, clients)
    h = uuid.uuid4().hex[:8]
    sub = subscription(f"sub_{h}", f"cus_{h}", "price_starter", user_id=user.user_id)
    created = event_json("customer.subscription.created", sub, int(time.time()))
    await post_stripe(http, quota_stack, created)
    async with asyncio.timeout(20):
        while await ledger.fetchval("SELECT plan FROM user_plans WHERE user_id = $1", user.user_id) != "starter":
            await asyncio.sleep(0.1)
    acks = [await user.send(room, f"mensaje {i}") for i in range(4)]
    delivered = await user.wait_count("newMessage", 3, lambda m: m["userId"] == user.user_id)
    notice = await user.wait_for("quotaExceeded")
    await asyncio.sleep(0.5)
    # the pool applies sends concurrently: any one of the four is the one over the quota
    assert len(user.events["quotaExceeded"]) == 1 and len(user.events["newMessage"]) == 3
    assert (notice["plan"], notice["limit"]) == ("starter", 3)
    assert {notice["messageId"], *(m["messageId"] for m in delivered)} == {a["messageId"] for a in acks}


async def test_over_the_ai_token_quota_no_model_call_is_made(quota_stack, fake_model, http, clients, ledger):
    user, room = await user_in_room(quota_stack, http, clients)
    await user.send(room, "@AgenteIA hola")
    reply = await user.wait_for("newMessage", lambda m: m.get("kind") == "ai", timeout=30)
    used = await ledger.fetchval(
        "SELECT sum(prompt_tokens + completion_tokens) FROM ai_usage WHERE asker = $1", f"user:{user.user_id}"
    )
    assert used >= 10  # the first call crossed Free's 10 tokens
    calls, before = len(fake_model.requests), await stats(http, quota_stack, user.user_id)
    ack = await user.send(room, "@AgenteIA otra pregunta")
    notice = await user.wait_for("quotaExceeded")
    assert (notice["kind"], notice["limit"], notice["used"]) == ("ai_tokens", 10, used)
    assert notice["resetsAt"] == tomorrow_utc() and notice["roomId"] == room
    await asyncio.sleep(0.5)
    assert len(fake_model.requests) == calls
    assert not [m for m in user.events["newMessage"] if m.get("kind") == "ai" and m["replyTo"] == ack["messageId"]]
    after = await stats(http, quota_stack, user.user_id)
    # only the question's own words were used; the agent answered nothing, so nothing more was charged
    assert after["wordsUsedTotal"] == before["wordsUsedTotal"] + count_words("@AgenteIA otra pregunta")
    row = await ledger.fetchrow(
        "SELECT status, result->>'reason' AS reason FROM inbox WHERE command_id = $1",
        agent_reply_ids(ack["messageId"])[0],
    )
    assert (row["status"], row["reason"]) == ("rejected", "quota_exceeded")
    assert reply["replyTo"] != ack["messageId"]
