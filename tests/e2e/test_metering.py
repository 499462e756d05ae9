"""Metered AI usage end to end: the agent's calls reach the local fake Stripe as meter events,
once per call, sent by the billing worker's periodic reporter through the real ``stripe`` library."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from schemas.billing import ReportUsage
from schemas.queues import BILLING_QUEUE, REPORT_USAGE_ACTOR
from tests.support.admin_api import grant
from tests.support.amqp import publish_commands
from tests.support.clients import ChatClient
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_stripe_meter import FakeStripeMeter
from tests.support.ids import uid
from tests.support.plans_stack import METER_EVENT, STRIPE_KEY, plans_stack, post_stripe
from tests.support.stripe_objects import event_json, subscription

MODEL_KEY = "sk-test-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def fake_model():
    fake = FakeOpenAI(api_key=MODEL_KEY)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
async def fake_meter():
    fake = FakeStripeMeter(api_key=STRIPE_KEY)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
def meter_stack(iso, stack_env, fake_model, fake_meter):
    env = {
        "OPENAI_BASE_URL": fake_model.url,
        "OPENAI_API_KEY": MODEL_KEY,
        "AI_MODEL": "fake-model",
        "STRIPE_API_BASE": fake_meter.url,
        "STRIPE_METER_EVENT_NAME": METER_EVENT,
        "METER_REPORT_INTERVAL_S": "0.5",
        "METER_BATCH_SIZE": "2",
    }
    with plans_stack(iso, stack_env, "metering", ("chat", "ai", "billing"), **env) as stack:
        yield stack


async def asking_user(stack, http, clients, ledger, subscribe: bool) -> tuple[ChatClient, str, str | None]:
    user = ChatClient(uid("meter"))
    clients.append(user)
    await grant(http, stack, user.user_id, 10, "g")
    customer = None
    if subscribe:
        h = uuid.uuid4().hex[:8]
        customer = f"cus_{h}"
        sub = subscription(f"sub_{h}", customer, "price_pro", user_id=user.user_id)
        await post_stripe(http, stack, event_json("customer.subscription.created", sub, int(time.time())))
        async with asyncio.timeout(20):
            while not await ledger.fetchval("SELECT count(*) FROM meter_windows WHERE user_id = $1", user.user_id):
                await asyncio.sleep(0.1)
    await user.connect(stack.node.port)
    room = uid("room")
    await user.join(room)
    return user, room, customer


async def ask(user: ChatClient, room: str, n: int) -> None:
    for i in range(n):
        ack = await user.send(room, f"@AgenteIA pregunta {i}")
        await user.wait_for("newMessage", lambda m, a=ack: m.get("replyTo") == a["messageId"], timeout=30)


async def calls_of(pool, user_id: str) -> list[dict]:
    rows = await pool.fetch(
        "SELECT call_id::text AS id, prompt_tokens + completion_tokens AS tokens, meter_reported_at FROM ai_usage"
        " WHERE asker = $1 ORDER BY created_at",
        f"user:{user_id}",
    )
    return [dict(r) for r in rows]


async def all_reported(pool, user_id: str, timeout: float = 30) -> list[dict]:
    async with asyncio.timeout(timeout):
        while True:
            calls = await calls_of(pool, user_id)
            if calls and all(c["meter_reported_at"] for c in calls):
                return calls
            await asyncio.sleep(0.2)


async def test_each_call_becomes_one_meter_event_despite_failures(meter_stack, fake_meter, http, clients, ledger):
    user, room, customer = await asking_user(meter_stack, http, clients, ledger, subscribe=True)
    fake_meter.fail_next(1)  # the first send fails outright
    fake_meter.lose_next(1)  # the next is recorded, but its answer is lost: the worker sends it again
    await ask(user, room, 3)
    calls = await all_reported(ledger, user.user_id)
    assert len(calls) == 3
    await asyncio.sleep(1.5)  # several more reporter runs: nothing is sent again
    mine = [e for e in fake_meter.events if e.customer_id == customer]
    assert sorted(e.identifier for e in mine) == sorted(c["id"] for c in calls)
    assert {e.identifier: e.value for e in mine} == {c["id"]: c["tokens"] for c in calls}
    assert all(e.event_name == METER_EVENT for e in mine)


async def test_free_users_calls_are_not_reported(meter_stack, fake_meter, http, clients, ledger):
    user, room, _ = await asking_user(meter_stack, http, clients, ledger, subscribe=False)
    await ask(user, room, 1)
    sent = len(fake_meter.events)
    await publish_commands(
        meter_stack.env["AMQP_URL"],
        BILLING_QUEUE,
        REPORT_USAGE_ACTOR,
        [ReportUsage(command_id=f"report:{uuid.uuid4()}")],
    )
    await asyncio.sleep(1.5)
    [call] = await calls_of(ledger, user.user_id)
    assert call["meter_reported_at"] is None and len(fake_meter.events) == sent
    assert call["id"] not in fake_meter.by_identifier()
