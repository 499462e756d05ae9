"""Operators taking conversations over, the AI auto-reply that respects it, and the inbox list query,
against the real PostgreSQL."""

from __future__ import annotations

import time
import uuid

from domain.credits import CreditPolicy
from infra import conversations, grants, ledger, tenants
from schemas.commands import AgentReply, ConversationTakeover, InboundChannelMessage, inbound_ids
from schemas.queues import AGENT_REPLY_ACTOR, CLASSIFY_ACTOR
from workers import ai_service, channel_service, takeover_service
from workers.providers.model import Completion

POLICY = CreditPolicy(1000, 50, 86_400)


async def new_tenant(pool, *, auto_reply: bool = True) -> str:
    tenant_id = f"t{uuid.uuid4().hex[:10]}"
    await tenants.create(
        pool, tenant_id, "Acme", auto_reply=auto_reply, channels=[("twilio_whatsapp", f"+1415-{tenant_id}")]
    )
    await grants.grant(pool, ledger.tenant_account(tenant_id), 5, "test", "seed")
    return tenant_id


def inbound(tenant_id: str, text: str, contact: str = "+34600000001") -> InboundChannelMessage:
    sid = f"SM{uuid.uuid4().hex}"
    command_id, message_id = inbound_ids("twilio", sid)
    return InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="twilio",
        channel="twilio_whatsapp",
        address=f"+1415-{tenant_id}",
        contact=contact,
        contact_name="Ana",
        provider_message_id=sid,
        text=text,
        received_at_ms=int(time.time() * 1000),
    )


def takeover(tenant_id: str, room: str, operator: str, *, release: bool = False, admin: bool = False):
    return ConversationTakeover(
        command_id=f"takeover:{operator}:{uuid.uuid4()}",
        tenant_id=tenant_id,
        conversation_id=room.rsplit(":", 1)[1],
        operator_id=operator,
        operator_name=operator.title(),
        release=release,
        admin=admin,
        requested_at_ms=int(time.time() * 1000),
    )


async def first_room(pool, tenant_id: str, text: str = "hola", contact: str = "+34600000001") -> str:
    outcome = await channel_service.inbound_message(pool, inbound(tenant_id, text, contact), POLICY, "/billing")
    return outcome.emits[0]["data"]["roomId"]


def actors(outcome) -> list[str]:
    return [item["actor"] for item in outcome.follow_ups]


async def test_take_over_is_idempotent_exclusive_and_announced(ledger):
    tenant_id = await new_tenant(ledger)
    room = await first_room(ledger, tenant_id)
    taken = await takeover_service.take_over(ledger, takeover(tenant_id, room, "olga"))
    assert taken.status == "applied"
    (update,) = taken.emits
    assert update["event"] == "conversationUpdated" and update["room"] == f"t/{tenant_id}"
    assert (update["data"]["takenOverBy"], update["data"]["takenOverByName"]) == ("olga", "Olga")
    assert update["data"]["roomId"] == room and update["data"]["takenOverAt"] > 0

    cmd = takeover(tenant_id, room, "olga")
    again = await takeover_service.take_over(ledger, cmd)  # taking what you hold changes nothing
    assert again.status == "applied" and again.emits[0]["data"]["takenOverBy"] == "olga"
    assert again.emits[0]["data"]["takenOverAt"] == update["data"]["takenOverAt"]
    replayed = await takeover_service.take_over(ledger, cmd)
    assert not replayed.fresh and replayed.emits == again.emits

    other = await takeover_service.take_over(ledger, takeover(tenant_id, room, "pablo"))
    assert other.status == "rejected"
    (refusal,) = other.emits
    assert refusal["event"] == "error" and refusal["room"] == "u/pablo"
    assert refusal["data"]["code"] == "conflict" and refusal["data"]["takenOverBy"] == "olga"
    assert "Olga" in refusal["data"]["message"] and refusal["data"]["event"] == "takeOverConversation"

    not_yours = await takeover_service.take_over(ledger, takeover(tenant_id, room, "pablo", release=True))
    assert not_yours.status == "rejected" and not_yours.emits[0]["data"]["code"] == "forbidden"
    released = await takeover_service.take_over(ledger, takeover(tenant_id, room, "olga", release=True))
    assert released.status == "applied" and released.emits[0]["data"]["takenOverBy"] is None
    free = await takeover_service.take_over(ledger, takeover(tenant_id, room, "pablo", release=True))
    assert free.status == "applied" and free.emits[0]["data"]["takenOverBy"] is None  # nothing to hand back

    await takeover_service.take_over(ledger, takeover(tenant_id, room, "pablo"))
    forced = await takeover_service.take_over(ledger, takeover(tenant_id, room, "root", release=True, admin=True))
    assert forced.status == "applied" and forced.emits[0]["data"]["takenOverBy"] is None


async def test_unknown_or_foreign_conversation_is_refused(ledger):
    tenant_id, other_tenant = await new_tenant(ledger), await new_tenant(ledger)
    room = await first_room(ledger, tenant_id)
    foreign = takeover(other_tenant, room.replace(tenant_id, other_tenant), "olga")
    refused = await takeover_service.take_over(ledger, foreign)
    assert refused.status == "rejected" and refused.emits[0]["data"]["message"] == "unknown conversation"
    held = await ledger.fetchval(
        "SELECT taken_over_by FROM conversations WHERE conversation_id = $1", uuid.UUID(room.rsplit(":", 1)[1])
    )
    assert held is None
    row = await ledger.fetchrow("SELECT status FROM inbox WHERE command_id = $1", foreign.command_id)
    assert row["status"] == "rejected"


async def test_auto_reply_is_suppressed_while_taken_over_and_resumes_after(ledger):
    tenant_id = await new_tenant(ledger, auto_reply=True)
    first = await channel_service.inbound_message(ledger, inbound(tenant_id, "hola"), POLICY, "/billing")
    assert actors(first) == [CLASSIFY_ACTOR, AGENT_REPLY_ACTOR]
    room = first.emits[0]["data"]["roomId"]
    assert "takenOverBy" in first.emits[1]["data"] and first.emits[1]["data"]["takenOverBy"] is None

    await takeover_service.take_over(ledger, takeover(tenant_id, room, "olga"))
    held = await channel_service.inbound_message(ledger, inbound(tenant_id, "¿sigue ahí?"), POLICY, "/billing")
    assert actors(held) == [CLASSIFY_ACTOR]  # still classified, not answered by the agent
    assert held.emits[1]["data"]["takenOverBy"] == "olga"

    await takeover_service.take_over(ledger, takeover(tenant_id, room, "olga", release=True))
    resumed = await channel_service.inbound_message(ledger, inbound(tenant_id, "gracias"), POLICY, "/billing")
    assert actors(resumed) == [CLASSIFY_ACTOR, AGENT_REPLY_ACTOR]


async def test_inbox_pages_newest_first_with_last_message_and_holder(ledger):
    tenant_id = await new_tenant(ledger, auto_reply=False)
    rooms = [await first_room(ledger, tenant_id, f"mensaje {i}", contact=f"+3460000010{i}") for i in range(5)]
    await ledger.execute(
        "UPDATE conversations SET intent = 'pricing', lead = 'hot', confidence = 0.9 WHERE conversation_id = $1",
        uuid.UUID(rooms[2].rsplit(":", 1)[1]),
    )
    await takeover_service.take_over(ledger, takeover(tenant_id, rooms[2], "olga"))
    # Two conversations with the same last activity: the id breaks the tie, nothing is skipped.
    await ledger.execute(
        "UPDATE conversations SET last_message_at = (SELECT last_message_at FROM conversations"
        " WHERE conversation_id = $1) WHERE conversation_id = $2",
        uuid.UUID(rooms[1].rsplit(":", 1)[1]),
        uuid.UUID(rooms[0].rsplit(":", 1)[1]),
    )

    seen, after = [], None
    while True:
        page = await conversations.page(ledger, tenant_id, after, 2)
        assert len(page.conversations) <= 2
        seen.extend(page.conversations)
        if page.next_position is None:
            break
        after = page.next_position
    assert sorted(c["roomId"] for c in seen) == sorted(rooms) and len(seen) == 5
    stamps = [(c["lastMessageAt"], c["conversationId"]) for c in seen]
    assert stamps == sorted(stamps, reverse=True)
    hot = next(c for c in seen if c["roomId"] == rooms[2])
    assert (hot["lead"], hot["intent"], hot["takenOverBy"], hot["takenOverByName"]) == (
        "hot",
        "pricing",
        "olga",
        "Olga",
    )
    assert (hot["lastMessage"], hot["lastMessageKind"], hot["channel"]) == ("mensaje 2", "inbound", "twilio_whatsapp")
    assert (await conversations.page(ledger, "nobody-here", None, 10)).conversations == []


async def test_an_agent_reply_queued_before_the_takeover_is_not_sent(ledger):
    tenant_id = await new_tenant(ledger, auto_reply=True)
    first = await channel_service.inbound_message(ledger, inbound(tenant_id, "hola"), POLICY, "/billing")
    reply = AgentReply.model_validate(first.follow_ups[1]["command"])
    await takeover_service.take_over(ledger, takeover(tenant_id, reply.room_id, "olga"))
    outcome = await ai_service.store_reply(
        ledger, reply, Completion("Hola, soy el agente", 5, 4, "m", 10), POLICY, "AI", "/billing"
    )
    assert outcome.status == "rejected" and outcome.emits == [] and outcome.follow_ups == []
    assert (
        await ledger.fetchval("SELECT count(*) FROM outbound_messages WHERE message_id = $1", uuid.UUID(reply.reply_id))
        == 0
    )
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(reply.reply_id)) == 0
    usage = await ledger.fetchval("SELECT count(*) FROM ai_usage WHERE command_id = $1", reply.command_id)
    assert usage == 1  # the model call happened and is accounted for
