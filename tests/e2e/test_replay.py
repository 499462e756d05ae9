"""The event log and ``python -m scripts.replay``, through real processes.

A mixed log (chat, AI, an inbound channel webhook and its classification, an operator reply sent
through the fake Twilio and its delivery report, a tip, a LemonSqueezy order, a chain deposit, and
one outbound send that failed because its row was not there yet) is replayed twice as a
subprocess: the first run re-applies only the failed send and is a no-op for the rest, the second
changes nothing at all: no ledger entry, no provider send, no model call.

This module's stack has its own database and vhost, so the replayed range holds only its commands.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
import dramatiq
import pytest

from infra import db, ledger
from infra.amqp import topology
from schemas.chain import ChainDeposit, deposit_command_id
from schemas.commands import SendChatMessage, SendOutbound
from schemas.queues import CHAIN_DEPOSIT_ACTOR, CHAIN_QUEUE, CHAT_QUEUE, OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from scripts.replay_file import Job
from tests.support import isolation
from tests.support.clients import ChatClient, make_token
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_providers import FakeTwilio
from tests.support.ids import uid
from tests.support.ledger_checks import assert_ledger_invariants
from tests.support.processes import ROOT, Processes
from tests.support.stripe_signing import body_of, lemonsqueezy_signature
from tests.support.twilio_webhooks import post_twilio, twilio_env

API_KEY = "sk-test-" + uuid.uuid4().hex
LEMONSQUEEZY_SECRET = "ls-replay-secret-" + uuid.uuid4().hex[:8]


@dataclass
class ReplayStack:
    port: int
    env: dict[str, str]
    pool: asyncpg.Pool
    twilio: FakeTwilio
    model: FakeOpenAI

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[tuple[FakeTwilio, FakeOpenAI]]:
    twilio, model = FakeTwilio(auth_token=isolation.TWILIO_AUTH_TOKEN), FakeOpenAI(api_key=API_KEY)
    await twilio.start()
    await model.start()
    yield twilio, model
    await model.close()
    await twilio.close()


@pytest.fixture(scope="module")
def replay_env(iso, stack_env, fakes) -> Iterator[dict[str, str]]:
    """A database and a vhost of this module's own."""
    twilio, model = fakes
    name = f"{iso.database}_replay"
    vhost = f"{iso.vhost}_replay"
    isolation.create_vhost(vhost)
    asyncio.run(db.migrate(f"{isolation.PG_BASE}/{name}"))
    try:
        yield {
            **stack_env,
            "DATABASE_URL": f"{isolation.PG_BASE}/{name}",
            "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
            "RATE_LIMITS": "200/1s",
            "OPENAI_BASE_URL": model.url,
            "OPENAI_API_KEY": API_KEY,
            "AI_MODEL": "fake-model",
            "META_APP_SECRET": isolation.META_APP_SECRET,
            "LEMONSQUEEZY_WEBHOOK_SECRET": LEMONSQUEEZY_SECRET,
            "LEMONSQUEEZY_VARIANTS": "222:pack_50",
            **twilio_env(twilio),
        }
    finally:
        isolation.delete_vhost(vhost)
        asyncio.run(isolation.drop_database(name))


@pytest.fixture(scope="module")
async def replay_stack(replay_env, fakes) -> AsyncIterator[ReplayStack]:
    procs = Processes(replay_env)
    pool = await db.create_pool(replay_env["DATABASE_URL"], max_size=4)
    try:
        node = procs.ingress()
        procs.workers("chat outbound ai billing chain", processes=1, threads=8)
        yield ReplayStack(node.port, replay_env, pool, *fakes)
    finally:
        procs.stop_all()
        async with pool.acquire() as conn:
            await assert_ledger_invariants(conn)
        await pool.close()


# --- helpers -------------------------------------------------------------------------------------


async def publish(amqp_url: str, queue: str, actor: str, payload: dict, **options: object) -> None:
    """Publish a command as another producer would; ``options`` are dramatiq's (e.g. max_retries)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for name, arguments in topology(queue):
            await channel.declare_queue(name, durable=True, arguments=arguments)
        message_id = str(uuid.uuid4())
        body = dramatiq.Message(
            queue_name=queue,
            actor_name=actor,
            args=(),
            kwargs={"command": payload},
            options=dict(options),
            message_id=message_id,
        ).encode()
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id),
            routing_key=queue,
        )


async def admin(http, stack: ReplayStack, path: str, body: dict) -> dict:
    async with http.post(stack.url(path), json=body, headers={"x-admin-token": isolation.ADMIN_TOKEN}) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def create_tenant(http, stack: ReplayStack, tenant_id: str, number: str) -> None:
    channels = [{"channel": "twilio_whatsapp", "address": number}]
    await admin(http, stack, "/api/admin/tenants", {"tenantId": tenant_id, "name": "Shop", "channels": channels})
    await admin(
        http, stack, f"/api/admin/tenants/{tenant_id}/grant", {"credits": 3, "reason": "t", "idempotencyKey": "k"}
    )


async def logged(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT command_id, command_type, status, last_status, deliveries, duplicates FROM event_log"
    )
    return {r["command_id"]: r for r in rows}


async def settled(stack: ReplayStack, quiet_s: float = 2.0, timeout: float = 60) -> dict[str, asyncpg.Record]:
    """The event log once nothing has changed in it, nor at the fakes, for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        rows = await logged(stack.pool)
        state = (
            sorted((k, r["deliveries"]) for k, r in rows.items()),
            len(stack.twilio.requests),
            len(stack.model.requests),
        )
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return rows
        await asyncio.sleep(0.2)
    raise TimeoutError("the workers never went quiet")


async def snapshot(stack: ReplayStack) -> dict:
    p = stack.pool
    return {
        "balances": {r["account_id"]: r["credits"] for r in await p.fetch("SELECT account_id, credits FROM accounts")},
        "transactions": await p.fetchval("SELECT count(*) FROM ledger_transactions"),
        "postings": await p.fetchval("SELECT count(*) FROM ledger_postings"),
        "messages": await p.fetchval("SELECT count(*) FROM messages"),
        "ai_usage": await p.fetchval("SELECT count(*) FROM ai_usage"),
        "outbound": sorted(
            tuple(map(str, r))
            for r in await p.fetch("SELECT message_id, status, provider_message_id FROM outbound_messages")
        ),
        "provider_sends": len(stack.twilio.requests),
        "model_calls": len(stack.model.requests),
    }


async def run_replay(stack: ReplayStack, *args: str) -> tuple[int, str, str]:
    """The script as an operator runs it; asynchronously, so the fakes (on this event loop) keep answering."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.replay",
        *args,
        cwd=ROOT,
        env=stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(180):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


# --- the mixed log -------------------------------------------------------------------------------


async def produce_mixed_log(stack: ReplayStack, http, clients: list[ChatClient]) -> str:
    """Every kind of command through its real producer (or as its producer publishes it); returns
    the command id of the outbound send that failed."""
    alice, bob, carol, dave = uid("alice"), uid("bob"), uid("carol"), uid("dave")
    for user, credits in ((alice, 10), (bob, 1)):
        await admin(
            http, stack, f"/api/credits/grant/{user}", {"credits": credits, "reason": "t", "idempotencyKey": "g"}
        )
    tenant_id, number, contact = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}", "+34612345678"
    await create_tenant(http, stack, tenant_id, number)

    # chat, and an AI reply to a mention
    sender = ChatClient(alice, "Alice")
    clients.append(sender)
    await sender.connect(stack.port)
    room = uid("room")
    await sender.join(room)
    assert (await sender.send(room, "hola a todos"))["status"] == "accepted"
    await sender.send(room, "@AgenteIA ¿qué hora es?")
    await sender.wait_for("newMessage", lambda m: m.get("kind") == "ai", timeout=30)

    # a tip (billing)
    tip = await sender.sio.call("sendTip", {"toUserId": bob, "credits": 2, "clientTipId": "t-1"}, timeout=10)
    assert tip["status"] == "accepted", tip
    await sender.wait_for("tipSent", lambda t: t["tipId"] == tip["tipId"], timeout=30)

    # an inbound WhatsApp message, an operator's reply sent through Twilio, its delivery report
    operator = ChatClient(uid("olga"), "Olga")
    clients.append(operator)
    await operator.connect(stack.port, token=make_token(operator.user_id, "Olga", role="operator", tenant=tenant_id))
    inbound = {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": stack.twilio.account_sid,
        "From": f"whatsapp:{contact}",
        "To": f"whatsapp:{number}",
        "Body": "¿Tienen talla M?",
    }
    assert (await post_twilio(http, stack.url("/webhooks/twilio"), inbound))[0] == 200
    conversation_room = (await operator.wait_for("conversationUpdated", timeout=30))["roomId"]
    await operator.join(conversation_room)
    ack = await operator.send(conversation_room, "Sí, la tenemos.")
    await operator.wait_for("messageStatus", lambda s: s["messageId"] == ack["messageId"], timeout=30)
    (sent,) = stack.twilio.accepted()
    report = {
        "MessageSid": sent.provider_id,
        "MessageStatus": "delivered",
        "AccountSid": stack.twilio.account_sid,
        "To": f"whatsapp:{contact}",
        "From": f"whatsapp:{number}",
    }
    assert (await post_twilio(http, stack.url("/webhooks/twilio"), report))[0] == 200

    # a LemonSqueezy order (billing), signed as LemonSqueezy signs it
    order = {
        "meta": {"event_name": "order_created", "custom_data": {"user_id": carol}},
        "data": {
            "type": "orders",
            "id": str(uuid.uuid4().int % 10**9),
            "attributes": {
                "status": "paid",
                "currency": "USD",
                "total": 2000,
                "refunded_amount": 0,
                "first_order_item": {"variant_id": 222},
            },
        },
    }
    body = body_of(order)
    headers = {"content-type": "application/json", "X-Signature": lemonsqueezy_signature(body, LEMONSQUEEZY_SECRET)}
    async with http.post(stack.url("/webhooks/lemonsqueezy"), data=body, headers=headers) as r:
        assert r.status == 200, await r.text()

    # a confirmed chain deposit from dave's linked wallet, as the chain watcher publishes it
    address = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    await stack.pool.execute("INSERT INTO wallet_links (address, user_id) VALUES ($1, $2)", address, dave)
    tx_hash = "0x" + uuid.uuid4().hex + uuid.uuid4().hex
    deposit = ChainDeposit(
        command_id=deposit_command_id(tx_hash, 0),
        chain_key="dev",
        tx_hash=tx_hash,
        log_index=0,
        block_number=1,
        from_address=address,
        amount=3 * 10**18,
        decimals=18,
    )
    await publish(stack.env["AMQP_URL"], CHAIN_QUEUE, CHAIN_DEPOSIT_ACTOR, deposit.model_dump(mode="json"))

    # an outbound send whose row was not committed yet, out of retries: it fails ...
    late_id = uuid.uuid4()
    late = SendOutbound(command_id=f"send:{late_id}", message_id=str(late_id))
    await publish(
        stack.env["AMQP_URL"], OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, late.model_dump(mode="json"), max_retries=0
    )
    deadline = time.monotonic() + 30
    while (row := (await logged(stack.pool)).get(late.command_id)) is None or row["status"] != "failed":
        assert time.monotonic() < deadline, "the late send was never logged as failed"
        await asyncio.sleep(0.2)
    # ... and its row commits afterwards (same conversation as the operator's reply), so a replay can send it
    await stack.pool.execute(
        "INSERT INTO outbound_messages (message_id, conversation_id, tenant_id, channel, address, contact, body)"
        " SELECT $1, conversation_id, tenant_id, channel, address, contact, 'Y también la L.' FROM outbound_messages"
        " WHERE message_id = $2",
        late_id,
        uuid.UUID(ack["messageId"]),
    )
    return late.command_id


EXPECTED_TYPES = {
    "chat.send_message": 2,
    "ai.reply": 1,
    "billing.send_tip": 1,
    "channel.inbound": 1,
    "ai.classify": 1,
    "channel.operator_reply": 1,
    "outbound.send": 2,
    "channel.status": 1,
    "billing.lemonsqueezy_order": 1,
    "chain.deposit": 1,
}


async def test_replaying_a_mixed_range_twice_changes_nothing_the_second_time(replay_stack, http, clients):
    stack = replay_stack
    since = await stack.pool.fetchval("SELECT now()")
    late_id = await produce_mixed_log(stack, http, clients)
    rows = await settled(stack)
    until = await stack.pool.fetchval("SELECT now()")
    types: dict[str, int] = {}
    for r in rows.values():
        types[r["command_type"]] = types.get(r["command_type"], 0) + 1
    assert types == EXPECTED_TYPES
    assert {k: r["status"] for k, r in rows.items() if r["status"] != "applied"} == {late_id: "failed"}
    window = ["--since", since.isoformat(), "--until", until.isoformat(), "--wait", "90"]

    before = await snapshot(stack)
    code, out, err = await run_replay(stack, *window, "--dry-run")
    assert code == 0, err
    assert "chat.send_message" in out and "failed" in out and "total" in out
    await asyncio.sleep(1.0)
    assert await settled(stack) == rows and await snapshot(stack) == before  # a dry run publishes nothing

    code, out, err = await run_replay(stack, *window, "--json", "--rate", "50")
    assert code == 0, out + err
    first = summary(out)
    assert (first["published"], first["re-applied"], first["no-op"], first["failed"], first["pending"]) == (
        12,
        1,
        11,
        0,
        0,
    )
    assert "msg/s" in err  # the progress bar shows its rate
    await settled(stack)
    after_first = await snapshot(stack)
    # Only the failed send did anything: one provider send; the rest changed nothing.
    assert after_first["provider_sends"] == before["provider_sends"] + 1
    assert {k: v for k, v in after_first.items() if k not in ("provider_sends", "outbound")} == {
        k: v for k, v in before.items() if k not in ("provider_sends", "outbound")
    }
    assert (await logged(stack.pool))[late_id]["status"] == "applied"

    code, out, err = await run_replay(stack, *window, "--json")
    assert code == 0, out + err
    second = summary(out)
    assert (second["published"], second["re-applied"], second["no-op"], second["failed"], second["pending"]) == (
        12,
        0,
        12,
        0,
        0,
    )
    await settled(stack)
    assert await snapshot(stack) == after_first  # no ledger entry, no provider send, no model call

    code, out, _ = await run_replay(
        stack, *window, "--json", "--type", "chain.deposit,billing.send_tip", "--status", "applied"
    )
    assert summary(out)["published"] == 2


async def test_a_jsonl_file_with_bad_lines(replay_stack, http, tmp_path: Path):
    stack = replay_stack
    user = uid("filer")
    await admin(http, stack, f"/api/credits/grant/{user}", {"credits": 5, "reason": "t", "idempotencyKey": "g"})
    tenant_id, number = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}"
    await create_tenant(http, stack, tenant_id, number)
    message_id = str(uuid.uuid4())
    send = SendChatMessage(
        command_id=f"msg:{user}:file-1",
        message_id=message_id,
        user_id=user,
        username="Filer",
        room_id=uid("room"),
        message="uno dos tres",
        accepted_at_ms=1,
    )
    sid = f"SM{uuid.uuid4().hex}"
    webhook = {"MessageSid": sid, "From": "whatsapp:+34600111222", "To": f"whatsapp:{number}", "Body": "hola"}
    lines = [
        json.dumps({"queue": CHAT_QUEUE, "actor": "chat_send_message", "command": send.model_dump(mode="json")}),
        "{this is not json",
        json.dumps({"webhook": "twilio", "body": webhook}),
        json.dumps({"queue": CHAT_QUEUE, "actor": "chat_send_everything", "command": send.model_dump(mode="json")}),
        json.dumps({"queue": CHAT_QUEUE, "actor": "chat_send_message", "command": {"command_id": "msg:x:y"}}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")

    code, out, err = await run_replay(stack, "--from-file", str(path), "--json", "--wait", "60")
    assert code == 1, out + err  # bad lines make it non-zero; the rest was applied
    first = summary(out)
    assert [b["line"] for b in first["bad_lines"]] == [2, 4, 5]
    assert "invalid JSON" in first["bad_lines"][0]["reason"]
    assert "unknown actor" in first["bad_lines"][1]["reason"]
    assert "message_id" in first["bad_lines"][2]["reason"]
    assert "line 2: invalid JSON" in err  # and reported as they were read
    # the inbound webhook also makes ai.classify, not one of the file's commands
    assert (first["published"], first["re-applied"], first["no-op"], first["failed"], first["pending"]) == (
        2,
        2,
        0,
        0,
        0,
    )
    await settled(stack)
    job_ids = [Job(CHAT_QUEUE, "chat_send_message", send.model_dump(mode="json")).command_id, f"twilio:{sid}"]
    rows = await logged(stack.pool)
    assert [rows[c]["status"] for c in job_ids] == ["applied", "applied"]
    stored = await stack.pool.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(message_id))
    charged = await stack.pool.fetchval(
        "SELECT words_used_total FROM accounts WHERE account_id = $1", ledger.user_account(user)
    )
    assert (stored, charged) == (1, 3)
    before = await snapshot(stack)

    code, out, err = await run_replay(stack, "--from-file", str(path), "--json")
    again = summary(out)
    assert (again["published"], again["re-applied"], again["no-op"]) == (2, 0, 2)
    await settled(stack)
    assert await snapshot(stack) == before  # ingesting the same file again applies nothing new
