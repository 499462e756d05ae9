"""Channel commands against the real PostgreSQL: routing, tenant charging, replies, delivery reports."""

from __future__ import annotations

import time
import uuid

import pytest

from domain.credits import CreditPolicy
from infra import grants, ledger, tenants
from schemas.commands import ChannelStatusUpdate, InboundChannelMessage, OperatorReply, inbound_ids, send_command_ids
from workers import channel_service

POLICY = CreditPolicy(1000, 50, 86_400)
NUMBER = "+14155238886"


async def new_tenant(pool, credits: int = 0) -> str:
    tenant_id = f"t{uuid.uuid4().hex[:10]}"
    await tenants.create(pool, tenant_id, "Acme", channels=[("twilio_whatsapp", f"{NUMBER}-{tenant_id}")])
    if credits:
        await grants.grant(pool, ledger.tenant_account(tenant_id), credits, "test", "seed")
    return tenant_id


def inbound(tenant_id: str, text: str, contact: str = "+34600000001", sid: str | None = None):
    sid = sid or f"SM{uuid.uuid4().hex}"
    command_id, message_id = inbound_ids("twilio", sid)
    return InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="twilio",
        channel="twilio_whatsapp",
        address=f"{NUMBER}-{tenant_id}",
        contact=contact,
        contact_name="Ana",
        provider_message_id=sid,
        text=text,
        received_at_ms=int(time.time() * 1000),
    )


async def tenant_balance(pool, tenant_id):
    return await pool.fetchrow(
        "SELECT credits, words_left, credits_charged_total FROM accounts WHERE account_id = $1",
        ledger.tenant_account(tenant_id),
    )


async def test_inbound_is_routed_stored_charged_and_shown_to_operators(ledger):
    tenant_id = await new_tenant(ledger, credits=2)
    cmd = inbound(tenant_id, "Hola, quiero información sobre precios")
    outcome = await channel_service.inbound_message(ledger, cmd, POLICY, "/billing")
    assert outcome.status == "applied"
    events = {e["event"]: e for e in outcome.emits}
    room = events["newMessage"]["data"]["roomId"]
    assert room.startswith(f"conv:{tenant_id}:") and events["newMessage"]["room"] == f"r/{room}"
    assert events["newMessage"]["data"]["kind"] == "inbound" and events["newMessage"]["data"]["words"] == 5
    assert events["conversationUpdated"]["room"] == f"t/{tenant_id}"
    assert (await tenant_balance(ledger, tenant_id))["credits"] == 1
    again = await channel_service.inbound_message(ledger, cmd, POLICY, "/billing")
    assert not again.fresh and again.emits == outcome.emits
    assert (await tenant_balance(ledger, tenant_id))["credits"] == 1
    second = await channel_service.inbound_message(ledger, inbound(tenant_id, "otra"), POLICY, "/billing")
    assert second.emits[0]["data"]["roomId"] == room  # same contact, same conversation


async def test_unknown_destination_is_recorded_not_lost_or_crashing(ledger):
    cmd = inbound("nobody", "hola")
    outcome = await channel_service.inbound_message(ledger, cmd, POLICY, "/billing")
    assert outcome.status == "rejected" and outcome.emits == []
    row = await ledger.fetchrow("SELECT status, result FROM inbox WHERE command_id = $1", cmd.command_id)
    assert row["status"] == "rejected" and row["result"]["reason"] == "unknown_destination"


async def test_a_tenant_out_of_credit_still_receives_but_operators_are_warned(ledger):
    tenant_id = await new_tenant(ledger, credits=0)
    cmd = inbound(tenant_id, "w " * 200)
    outcome = await channel_service.inbound_message(ledger, cmd, POLICY, "/billing")
    assert outcome.status == "applied"
    events = [e["event"] for e in outcome.emits]
    assert events == ["newMessage", "conversationUpdated", "creditError"]
    assert outcome.emits[2]["room"] == f"t/{tenant_id}"
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(cmd.message_id)) == 1
    assert (await tenant_balance(ledger, tenant_id))["credits_charged_total"] == 0


async def reply(tenant_id: str, room: str, text: str) -> OperatorReply:
    command_id, message_id = send_command_ids("op-1", None)
    return OperatorReply(
        command_id=command_id,
        message_id=message_id,
        tenant_id=tenant_id,
        conversation_id=room.rsplit(":", 1)[1],
        operator_id="op-1",
        operator_name="Olga",
        text=text,
        accepted_at_ms=int(time.time() * 1000),
    )


async def test_operator_reply_is_charged_stored_and_queued_for_sending(ledger):
    tenant_id = await new_tenant(ledger, credits=1)
    first = await channel_service.inbound_message(ledger, inbound(tenant_id, "hola"), POLICY, "/billing")
    room = first.emits[0]["data"]["roomId"]
    cmd = await reply(tenant_id, room, "Buenos días, ¿en qué le ayudo?")
    outcome = await channel_service.operator_reply(ledger, cmd, POLICY, "/billing")
    assert outcome.status == "applied"
    assert outcome.emits[0]["data"]["kind"] == "outbound"
    (follow,) = outcome.follow_ups
    assert follow["queue"] == "outbound" and follow["command"]["message_id"] == cmd.message_id
    row = await ledger.fetchrow(
        "SELECT status, contact, channel FROM outbound_messages WHERE message_id = $1", uuid.UUID(cmd.message_id)
    )
    assert tuple(row) == ("queued", "+34600000001", "twilio_whatsapp")
    replayed = await channel_service.operator_reply(ledger, cmd, POLICY, "/billing")
    assert not replayed.fresh and replayed.follow_ups == outcome.follow_ups  # re-queued, dedupes downstream


async def test_operator_reply_beyond_grace_is_blocked(ledger):
    tenant_id = await new_tenant(ledger, credits=0)
    first = await channel_service.inbound_message(ledger, inbound(tenant_id, "hola"), POLICY, "/billing")
    room = first.emits[0]["data"]["roomId"]
    blocked = await channel_service.operator_reply(ledger, await reply(tenant_id, room, "w " * 100), POLICY, "/b")
    assert blocked.status == "rejected" and blocked.emits[0]["event"] == "creditError" and not blocked.follow_ups
    graced = await channel_service.operator_reply(ledger, await reply(tenant_id, room, "w " * 40), POLICY, "/b")
    assert graced.status == "applied" and graced.follow_ups  # inside grace: still sent


async def test_delivery_reports_move_forward_only(ledger):
    tenant_id = await new_tenant(ledger, credits=1)
    first = await channel_service.inbound_message(ledger, inbound(tenant_id, "hola"), POLICY, "/billing")
    cmd = await reply(tenant_id, first.emits[0]["data"]["roomId"], "hola")
    await channel_service.operator_reply(ledger, cmd, POLICY, "/billing")
    sid = f"SM{uuid.uuid4().hex}"
    await ledger.execute(
        "UPDATE outbound_messages SET provider_message_id = $2, status = 'sent' WHERE message_id = $1",
        uuid.UUID(cmd.message_id),
        sid,
    )

    def report(status: str) -> ChannelStatusUpdate:
        return ChannelStatusUpdate(
            command_id=f"status:twilio:{sid}:{status}",
            provider="twilio",
            provider_message_id=sid,
            status=status,
            reported_at_ms=0,
        )

    delivered = await channel_service.status_update(ledger, report("delivered"))
    assert delivered.emits[0]["event"] == "messageStatus" and delivered.emits[0]["data"]["status"] == "delivered"
    late = await channel_service.status_update(ledger, report("sent"))
    assert late.emits == []
    await channel_service.status_update(ledger, report("read"))
    status = await ledger.fetchval(
        "SELECT status FROM outbound_messages WHERE message_id = $1", uuid.UUID(cmd.message_id)
    )
    assert status == "read"
    with pytest.raises(channel_service.UnknownProviderMessage):
        await channel_service.status_update(
            ledger,
            report("delivered").model_copy(
                update={"provider_message_id": "SMunknown", "command_id": "status:twilio:SMunknown:delivered"}
            ),
        )
    assert (
        await ledger.fetchval("SELECT count(*) FROM inbox WHERE command_id = 'status:twilio:SMunknown:delivered'") == 0
    )
