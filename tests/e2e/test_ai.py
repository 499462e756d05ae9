"""The AI agent through real processes: a local OpenAI-compatible server stands in for the model,
and the real ``openai`` client talks to it."""

from __future__ import annotations

import asyncio
import time
import uuid

from domain.words import count_words
from schemas.commands import AgentReply, agent_reply_ids
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE
from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.amqp import publish_commands
from tests.support.clients import ChatClient, make_token
from tests.support.fake_openai import Reply
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.stacks import OneNode
from tests.support.twilio_webhooks import post_twilio


async def chat_user(ai_stack, http, clients, credits: int) -> tuple[ChatClient, str]:
    node, _ = ai_stack
    user = ChatClient(uid("asker"), "Asker")
    clients.append(user)
    if credits:
        await grant(http, OneNode(node.port), user.user_id, credits, "g")
    await user.connect(node.port)
    room = uid("room")
    await user.join(room)
    return user, room


async def test_a_mention_gets_a_streamed_reply_that_is_charged(ai_stack, fake_model, http, clients, ledger):
    user, room = await chat_user(ai_stack, http, clients, credits=2)
    question = "@AgenteIA ¿cuál es el horario de atención?"
    ack = await user.send(room, question)
    reply = await user.wait_for("newMessage", lambda m: m.get("kind") == "ai", timeout=30)
    assert reply["replyTo"] == ack["messageId"] and reply["userId"] == "agent" and reply["username"] == "AgenteIA"
    deltas = [d for d in user.events["messageDelta"] if d["messageId"] == reply["messageId"]]
    assert len(deltas) > 1 and "".join(d["delta"] for d in deltas) == reply["message"]
    s = await stats(http, OneNode(ai_stack[0].port), user.user_id)
    assert s["wordsUsedTotal"] == count_words(question) + reply["words"] and s["creditsChargedTotal"] == 1
    usage = await ledger.fetchrow(
        "SELECT purpose, status, prompt_tokens, completion_tokens FROM ai_usage WHERE command_id = $1",
        f"ai:{ack['messageId']}",
    )
    assert usage["purpose"] == "reply" and usage["status"] == "ok" and usage["completion_tokens"] > 0
    assert fake_model.requests[-1].body["stream"] is True


async def test_a_429_then_success_is_one_reply_and_one_charge(ai_stack, fake_model, http, clients, ledger):
    user, room = await chat_user(ai_stack, http, clients, credits=2)
    fake_model.script(Reply.rate_limited(retry_after=1))
    ack = await user.send(room, "@AgenteIA hola")
    reply = await user.wait_for("newMessage", lambda m: m.get("kind") == "ai", timeout=30)
    assert reply["replyTo"] == ack["messageId"]
    calls = await ledger.fetchval("SELECT count(*) FROM ai_usage WHERE command_id = $1", f"ai:{ack['messageId']}")
    assert calls == 1
    assert (await stats(http, OneNode(ai_stack[0].port), user.user_id))["creditsChargedTotal"] == 1


async def test_exhausted_attempts_end_in_agent_error(ai_stack, fake_model, http, clients, ledger):
    user, room = await chat_user(ai_stack, http, clients, credits=2)
    fake_model.script(Reply.server_error(), Reply.server_error(), Reply.server_error())
    ack = await user.send(room, "@AgenteIA hola")
    error = await user.wait_for("agentError", timeout=40)
    assert error["replyTo"] == ack["messageId"] and error["code"] == "unavailable"
    assert not [m for m in user.events["newMessage"] if m.get("kind") == "ai"]


async def test_a_redelivered_ai_command_makes_no_second_call(ai_stack, fake_model, http, clients, ledger):
    user, room = await chat_user(ai_stack, http, clients, credits=2)
    ack = await user.send(room, "@AgenteIA hola")
    await user.wait_for("newMessage", lambda m: m.get("kind") == "ai", timeout=30)
    calls_before = len(fake_model.requests)
    command_id, reply_id = agent_reply_ids(ack["messageId"])
    again = AgentReply(
        command_id=command_id,
        reply_id=reply_id,
        trigger_message_id=ack["messageId"],
        room_id=room,
        asker=f"user:{user.user_id}",
        asker_user_id=user.user_id,
        requested_at_ms=int(time.time() * 1000),
    )
    await publish_commands(ai_stack[1]["AMQP_URL"], AI_QUEUE, AGENT_REPLY_ACTOR, [again, again])
    deadline = time.monotonic() + 30  # both redeliveries were taken and found the reply done
    while (await ledger.fetchval("SELECT duplicates FROM event_log WHERE command_id = $1", command_id) or 0) < 2:
        assert time.monotonic() < deadline, "the redelivered commands were not processed"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    # Its reply was published once already: not again, and the room sees it once.
    assert len([m for m in user.events["newMessage"] if m.get("kind") == "ai"]) == 1
    assert len(fake_model.requests) == calls_before
    assert (await stats(http, OneNode(ai_stack[0].port), user.user_id))["creditsChargedTotal"] == 1
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(reply_id)) == 1


async def test_an_asker_without_credit_gets_a_credit_error_and_no_call(ai_stack, fake_model, http, clients):
    user, room = await chat_user(ai_stack, http, clients, credits=0)
    calls_before = len(fake_model.requests)
    await user.send(room, "@AgenteIA hola")  # 2 words: delivered free within grace
    error = await user.wait_for("creditError", timeout=30)
    assert "AI agent" in error["message"]
    await asyncio.sleep(1.0)
    assert len(fake_model.requests) == calls_before


async def test_a_channel_message_is_classified_and_auto_answered(
    ai_stack, fake_model, fake_twilio, http, admin_headers, clients, ledger
):
    node, _ = ai_stack
    base = f"http://127.0.0.1:{node.port}"
    tenant_id, number = uid("shop"), f"+1555{uuid.uuid4().int % 10**7:07d}"
    async with http.post(
        f"{base}/api/admin/tenants",
        headers=admin_headers,
        json={
            "tenantId": tenant_id,
            "name": "Shop",
            "autoReply": True,
            "systemPrompt": "Eres el asistente de Shop.",
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
    operator = ChatClient(uid("op"))
    clients.append(operator)
    await operator.connect(node.port, token=make_token(operator.user_id, role="operator", tenant=tenant_id))

    inbound = {
        "MessageSid": f"SM{uuid.uuid4().hex}",
        "AccountSid": fake_twilio.account_sid,
        "From": "whatsapp:+34600111222",
        "To": f"whatsapp:{number}",
        "Body": "Quiero comprar dos unidades hoy",
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    status, _, _ = await post_twilio(http, f"{base}/webhooks/twilio", inbound)
    assert status == 200
    classified = await operator.wait_for("conversationUpdated", lambda u: u.get("intent"), timeout=30)
    assert classified["lead"] in ("hot", "warm", "cold") and 0 <= classified["confidence"] <= 1
    for _ in range(100):
        if fake_twilio.accepted():
            break
        await asyncio.sleep(0.2)
    (sent,) = fake_twilio.accepted()
    assert sent.fields["To"] == "whatsapp:+34600111222" and sent.fields["Body"]
    system = next(r.body for r in fake_model.requests if r.body.get("stream"))["messages"][0]["content"]
    assert system == "Eres el asistente de Shop."
    row = await ledger.fetchrow("SELECT intent, lead FROM conversations WHERE tenant_id = $1", tenant_id)
    assert row["intent"] == classified["intent"]
    kinds = await ledger.fetch(
        "SELECT payload->>'kind' AS kind FROM messages WHERE room_id = $1 ORDER BY seq", classified["roomId"]
    )
    assert [k["kind"] for k in kinds] == ["inbound", "ai"]


async def test_without_a_model_a_mention_gets_a_clear_notice(iso, stack_env, ledger):
    """No OPENAI_BASE_URL: the worker answers with agentError not_configured, calls nothing, crashes nothing."""
    vhost = f"{iso.vhost}_noai"
    isolation.create_vhost(vhost)
    amqp_url = f"{isolation.AMQP_BASE}/{vhost}"
    procs = Processes({**stack_env, "AMQP_URL": amqp_url, "OPENAI_BASE_URL": "", "AI_MODEL": ""})
    try:
        procs.workers("ai", processes=1, threads=2)
        trigger = str(uuid.uuid4())
        command_id, reply_id = agent_reply_ids(trigger)
        ask = AgentReply(
            command_id=command_id,
            reply_id=reply_id,
            trigger_message_id=trigger,
            room_id="r-noai",
            asker="user:nobody",
            asker_user_id="nobody",
            requested_at_ms=int(time.time() * 1000),
        )
        await publish_commands(amqp_url, AI_QUEUE, AGENT_REPLY_ACTOR, [ask])
        row = None
        for _ in range(100):
            row = await ledger.fetchrow("SELECT status, result FROM inbox WHERE command_id = $1", command_id)
            if row:
                break
            await asyncio.sleep(0.1)
        assert row is not None and row["status"] == "rejected"
        (notice,) = row["result"]["emits"]
        assert notice["event"] == "agentError" and notice["room"] == "r/r-noai"
        assert notice["data"]["code"] == "not_configured" and notice["data"]["replyTo"] == trigger
        assert procs.started[0].popen.poll() is None  # still running
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)
