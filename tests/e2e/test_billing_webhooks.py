"""Credit packs end to end: a real ingress node and billing + chat workers, the real ``stripe``
library against a local fake Stripe API, webhooks signed as Stripe and LemonSqueezy sign them.

The node and workers of this module publish into their own vhost, so no other module's workers
(with other settings) consume these commands; they share the run's database and Redis.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from infra import ledger as ledger_repo
from infra import receivables
from ingress.webhooks.billing import stripe_command
from schemas.queues import BILLING_QUEUE, STRIPE_PAYMENT_ACTOR
from tests.support import isolation
from tests.support.amqp import publish_commands
from tests.support.clients import ChatClient, make_token
from tests.support.fake_stripe import FakeStripe, event
from tests.support.processes import Processes, free_port
from tests.support.stripe_signing import body_of, lemonsqueezy_signature, stripe_signature

STRIPE_WEBHOOK_SECRET = "whsec_test_" + secrets.token_hex(12)
LEMONSQUEEZY_SECRET = "ls-test-secret-" + secrets.token_hex(8)
PACKS = "pack_10:10:500:usd,pack_50:50:2000:usd,pack_200:200:6000:usd"


@dataclass
class Billing:
    port: int
    env: dict[str, str]
    fake: FakeStripe

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
def billing(iso, stack_env, fake_stripe: FakeStripe) -> Iterator[Billing]:
    vhost = f"{iso.vhost}_billing"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "RATE_LIMITS": "200/1s",
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "CREDIT_PACKS": PACKS,
        "LEMONSQUEEZY_WEBHOOK_SECRET": LEMONSQUEEZY_SECRET,
        "LEMONSQUEEZY_VARIANTS": "111:pack_10,222:pack_50",
    }
    procs = Processes(env)
    try:
        node = procs.ingress()
        procs.workers("billing chat", processes=1, threads=4)
        yield Billing(node.port, env, fake_stripe)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def credits(pool, user: str) -> int | None:
    return await pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", ledger_repo.user_account(user))


async def eventually(check, timeout: float = 20.0):
    """Poll ``check`` until it returns a truthy value (workers apply commands asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def settle_for(pool, user: str, expected: int) -> int | None:
    async def check():
        return await credits(pool, user) == expected

    await eventually(check)
    return await credits(pool, user)


async def checkout(http, billing: Billing, user: str, pack: str = "pack_10") -> dict:
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    async with http.post(billing.url("/api/billing/checkout"), json={"pack": pack}, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def post_stripe(
    http,
    url: str,
    payload: dict,
    *,
    secret: str = STRIPE_WEBHOOK_SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> tuple[int, dict]:
    body = body_of(payload)
    header = signature if signature is not None else stripe_signature(body, secret, timestamp)
    headers = {"content-type": "application/json"}
    if header:
        headers["Stripe-Signature"] = header
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def inbox_row(pool, command_id: str) -> str | None:
    return await pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", command_id)


# --- packs and checkout ----------------------------------------------------------------------------


async def test_packs_are_listed(billing: Billing, http):
    async with http.get(billing.url("/api/billing/packs")) as resp:
        assert resp.status == 200
        packs = (await resp.json())["packs"]
    assert [(p["id"], p["credits"], p["amount"], p["currency"]) for p in packs] == [
        ("pack_10", 10, 500, "usd"),
        ("pack_50", 50, 2000, "usd"),
        ("pack_200", 200, 6000, "usd"),
    ]


async def test_checkout_creates_a_session_with_the_user_and_pack_in_its_metadata(billing: Billing, http):
    user = uid("buyer")
    made = await checkout(http, billing, user, "pack_50")
    session = billing.fake.sessions[made["sessionId"]]
    assert made["url"] == session["url"] and made["credits"] == 50
    assert session["metadata"] == {"user_id": user, "pack": "pack_50", "credits": "50"}
    assert (session["amount_total"], session["currency"], session["mode"]) == (2000, "usd", "payment")
    request = next(r for r in billing.fake.requests if r.params.get("metadata", {}).get("user_id") == user)
    assert request.headers["Authorization"] == f"Bearer {billing.fake.api_key}"
    assert request.headers.get("Idempotency-Key")  # the library's retries cannot create two sessions


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"pack": "pack_10"}, 401, "unauthorized"),
        ({"Authorization": "Bearer not-a-jwt"}, {"pack": "pack_10"}, 401, "unauthorized"),
        ("user", {"pack": "pack_7"}, 400, "unknown_pack"),
        ("user", {"pack": 10}, 400, "bad_request"),
        ("user", {}, 400, "bad_request"),
    ],
)
async def test_checkout_refuses_bad_requests(billing: Billing, http, headers, body, status, code):
    if headers == "user":
        headers = {"Authorization": f"Bearer {make_token(uid('buyer'))}"}
    before = len(billing.fake.requests)
    async with http.post(billing.url("/api/billing/checkout"), json=body, headers=headers) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code
    assert len(billing.fake.requests) == before  # Stripe was not called


async def test_a_stripe_error_is_502(billing: Billing, http):
    billing.fake.fail_next.append((400, "invalid_request_error"))
    headers = {"Authorization": f"Bearer {make_token(uid('buyer'))}"}
    async with http.post(billing.url("/api/billing/checkout"), json={"pack": "pack_10"}, headers=headers) as resp:
        assert resp.status == 502
        assert (await resp.json())["error"]["code"] == "payment_provider_error"


# --- the Stripe webhook ----------------------------------------------------------------------------


async def test_a_paid_checkout_grants_once_across_replays_and_event_ids(billing: Billing, http, ledger, clients):
    user = uid("buyer")
    watcher = ChatClient(user)
    clients.append(watcher)
    await watcher.connect(billing.port)
    made = await checkout(http, billing, user)
    completed = billing.fake.completed_event(made["sessionId"])
    url = billing.url("/webhooks/stripe")
    assert await post_stripe(http, url, completed) == (200, {"received": True, "duplicate": False})
    purchased = await watcher.wait_for("creditsPurchased")
    assert (purchased["credits"], purchased["balance"], purchased["purchaseRef"]) == (10, 10, made["sessionId"])
    assert await post_stripe(http, url, completed) == (200, {"received": True, "duplicate": True})
    # Stripe's replay of the same session under other event ids and types.
    session = billing.fake.sessions[made["sessionId"]]
    again = event("checkout.session.async_payment_succeeded", session)
    assert (await post_stripe(http, url, again))[0] == 200
    assert await eventually(lambda: inbox_row(ledger, f"stripe:{again['id']}"))
    assert await credits(ledger, user) == 10
    assert await ledger.fetchval("SELECT count(*) FROM purchases WHERE user_id = $1", user) == 1


async def test_a_redelivered_command_and_a_refund_redelivered_apply_once(billing: Billing, http, ledger):
    """Bypass ingress's dedupe: the worker's inbox alone makes each copy change nothing."""
    user = uid("redelivered")
    made = await checkout(http, billing, user, "pack_200")
    completed = stripe_command(billing.fake.completed_event(made["sessionId"]))
    refunded = stripe_command(billing.fake.refunded_event(made["sessionId"], amount_refunded=3000))
    amqp_url = billing.env["AMQP_URL"]
    await publish_commands(amqp_url, BILLING_QUEUE, STRIPE_PAYMENT_ACTOR, [completed] * 5)
    assert await settle_for(ledger, user, 200) == 200
    await publish_commands(amqp_url, BILLING_QUEUE, STRIPE_PAYMENT_ACTOR, [refunded] * 5)
    assert await settle_for(ledger, user, 100) == 100  # half the price back: half the pack back, once
    await asyncio.sleep(1.0)
    assert await credits(ledger, user) == 100
    assert await ledger.fetchval("SELECT attempts FROM inbox WHERE command_id = $1", completed.command_id) == 1


async def test_bad_signatures_are_400_and_enqueue_nothing(billing: Billing, http, ledger):
    user = uid("buyer")
    made = await checkout(http, billing, user)
    completed = billing.fake.completed_event(made["sessionId"])
    url = billing.url("/webhooks/stripe")
    stale = int(time.time()) - 400  # outside the 300 s tolerance
    for kwargs in (
        {"secret": "whsec_wrong"},
        {"timestamp": stale},
        {"signature": "t=1,v1=deadbeef"},
        {"signature": ""},
    ):
        status, reply = await post_stripe(http, url, completed, **kwargs)
        assert status == 400 and reply["error"]["code"] == "bad_signature", (kwargs, reply)
    tampered = json.loads(json.dumps(completed))
    header = stripe_signature(body_of(completed), STRIPE_WEBHOOK_SECRET)
    tampered["data"]["object"]["metadata"]["credits"] = "1000"
    assert (await post_stripe(http, url, tampered, signature=header))[0] == 400
    await asyncio.sleep(1.0)
    assert await inbox_row(ledger, f"stripe:{completed['id']}") is None
    assert await credits(ledger, user) is None
    # The genuine delivery is not mistaken for one of the refused ones.
    assert await post_stripe(http, url, completed) == (200, {"received": True, "duplicate": False})
    assert await settle_for(ledger, user, 10) == 10


async def test_events_that_move_no_credits_are_acknowledged_and_not_enqueued(billing: Billing, http):
    status, reply = await post_stripe(http, billing.url("/webhooks/stripe"), event("payout.paid", {"id": "po_1"}))
    assert (status, reply) == (200, {"received": True, "ignored": True})


async def test_refund_shortfall_blocks_spending_until_a_new_pack_covers_it(billing: Billing, http, ledger, clients):
    user = uid("spender")
    client = ChatClient(user)
    clients.append(client)
    await client.connect(billing.port)
    room = uid("room")
    await client.join(room)
    url = billing.url("/webhooks/stripe")
    first = await checkout(http, billing, user)
    assert (await post_stripe(http, url, billing.fake.completed_event(first["sessionId"])))[0] == 200
    assert await settle_for(ledger, user, 10) == 10
    for _ in range(3):  # 1999 words each (a message holds 4000 characters): 6 credits in all
        ack = await client.send(room, "a " * 1999)
        assert ack["status"] == "accepted", ack
        await client.wait_for("newMessage", lambda m, ack=ack: m["messageId"] == ack["messageId"])
    assert await credits(ledger, user) == 4

    assert (await post_stripe(http, url, billing.fake.refunded_event(first["sessionId"])))[0] == 200
    refunded = await client.wait_for("creditsRefunded")
    assert (refunded["taken"], refunded["owed"], refunded["balance"]) == (4, 6, 0)

    blocked = await client.send(room, "hola de nuevo")
    error = await client.wait_for("creditError", lambda e: e["messageId"] == blocked["messageId"])
    assert "6 credit(s) owed" in error["message"]

    second = await checkout(http, billing, user)
    assert (await post_stripe(http, url, billing.fake.completed_event(second["sessionId"])))[0] == 200
    assert await settle_for(ledger, user, 4) == 4  # 10 - 6 owed
    assert await receivables.outstanding(ledger, ledger_repo.user_account(user)) == 0
    ok = await client.send(room, "ya pagué")
    await client.wait_for("newMessage", lambda m: m["messageId"] == ok["messageId"])


async def test_a_refund_that_arrives_before_its_purchase(billing: Billing, http, ledger):
    user = uid("early")
    made = await checkout(http, billing, user)
    billing.fake.pay(made["sessionId"])
    url = billing.url("/webhooks/stripe")
    refund = billing.fake.refunded_event(made["sessionId"])
    assert (await post_stripe(http, url, refund))[0] == 200
    assert await eventually(lambda: inbox_row(ledger, f"stripe:{refund['id']}"))
    assert (await post_stripe(http, url, billing.fake.completed_event(made["sessionId"])))[0] == 200
    assert await eventually(lambda: ledger.fetchval("SELECT credits_reversed FROM purchases WHERE user_id = $1", user))
    assert await credits(ledger, user) == 0


async def test_broker_down_is_503_and_the_retry_is_accepted(billing: Billing, http, ledger):
    user = uid("retry")
    made = await checkout(http, billing, user)
    completed = billing.fake.completed_event(made["sessionId"])
    procs = Processes({**billing.env, "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"})
    try:
        down = procs.ingress(require_healthy=False)
        started = time.monotonic()
        status, reply = await post_stripe(http, f"http://127.0.0.1:{down.port}/webhooks/stripe", completed)
        assert (status, reply["error"]["code"]) == (503, "unavailable")
        assert time.monotonic() - started < 10
    finally:
        procs.stop_all()
    # Stripe retries against a healthy node: not deduped away, and granted.
    assert await post_stripe(http, billing.url("/webhooks/stripe"), completed) == (
        200,
        {"received": True, "duplicate": False},
    )
    assert await settle_for(ledger, user, 10) == 10


async def test_an_unconfigured_node_answers_503_and_enqueues_nothing(billing: Billing, http):
    blank = {"STRIPE_SECRET_KEY": "", "STRIPE_WEBHOOK_SECRET": "", "LEMONSQUEEZY_WEBHOOK_SECRET": ""}
    procs = Processes({**billing.env, **blank})
    try:
        node = procs.ingress()
        base = f"http://127.0.0.1:{node.port}"
        status, reply = await post_stripe(http, base + "/webhooks/stripe", event("charge.refunded", {}))
        assert (status, reply["error"]["code"]) == (503, "not_configured")
        async with http.post(base + "/webhooks/lemonsqueezy", data=b"{}", headers={"X-Signature": "00"}) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (503, "not_configured")
        headers = {"Authorization": f"Bearer {make_token(uid('buyer'))}"}
        async with http.post(base + "/api/billing/checkout", json={"pack": "pack_10"}, headers=headers) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (503, "not_configured")
    finally:
        procs.stop_all()


# --- LemonSqueezy ----------------------------------------------------------------------------------


def ls_order(
    event_name: str, order_id: int, user: str | None, *, variant: int = 222, status: str = "paid", refunded: int = 0
) -> dict:
    return {
        "meta": {"event_name": event_name, "custom_data": {"user_id": user} if user else None, "test_mode": True},
        "data": {
            "type": "orders",
            "id": str(order_id),
            "attributes": {
                "store_id": 1,
                "identifier": str(uuid.uuid4()),
                "order_number": order_id,
                "status": status,
                "currency": "USD",
                "total": 2000,
                "refunded": refunded > 0,
                "refunded_amount": refunded,
                "first_order_item": {"order_id": order_id, "variant_id": variant, "product_id": 7},
                "test_mode": True,
            },
        },
    }


async def post_ls(http, billing: Billing, payload: dict, signature: str | None = None) -> tuple[int, dict]:
    body = body_of(payload)
    headers = {"content-type": "application/json", "X-Event-Name": payload["meta"]["event_name"]}
    if signature != "":
        headers["X-Signature"] = signature or lemonsqueezy_signature(body, LEMONSQUEEZY_SECRET)
    async with http.post(billing.url("/webhooks/lemonsqueezy"), data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_lemonsqueezy_order_grants_once_and_its_refund_takes_back(billing: Billing, http, ledger):
    user = uid("lemon")
    order_id = int(time.time() * 1000) % 10**9
    created = ls_order("order_created", order_id, user)
    assert await post_ls(http, billing, created) == (200, {"received": True, "duplicate": False})
    assert await settle_for(ledger, user, 50) == 50
    assert await post_ls(http, billing, created) == (200, {"received": True, "duplicate": True})
    refunded = ls_order("order_refunded", order_id, user, status="refunded", refunded=2000)
    assert await post_ls(http, billing, refunded) == (200, {"received": True, "duplicate": False})
    assert await settle_for(ledger, user, 0) == 0
    assert (
        await ledger.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'purchase' AND reference = $1",
            f"lemonsqueezy:{order_id}",
        )
        == 1
    )


async def test_lemonsqueezy_bad_signatures_are_401_and_enqueue_nothing(billing: Billing, http, ledger):
    user = uid("lemon")
    order_id = int(time.time() * 1000) % 10**9 + 1
    created = ls_order("order_created", order_id, user)
    for signature in ("", "00" * 32, lemonsqueezy_signature(body_of(created), "wrong-secret")):
        status, reply = await post_ls(http, billing, created, signature)
        assert status == 401 and reply["error"]["code"] == "unauthorized"
    await asyncio.sleep(1.0)
    assert await credits(ledger, user) is None
    ignored = {"meta": {"event_name": "subscription_created"}, "data": {"id": "1", "attributes": {}}}
    assert await post_ls(http, billing, ignored) == (200, {"received": True, "ignored": True})
    status, reply = await post_ls(http, billing, {"meta": {"event_name": "order_created"}, "data": {}})
    assert status == 400 and reply["error"]["code"] == "bad_request"
