"""Apply channel commands: inbound messages, operator replies and delivery reports.

Words of inbound and outbound channel messages are charged to the tenant under the
same rules as chat. An inbound message is always stored and shown to the tenant's
operators, even when the tenant is out of credit: nothing a contact says is lost.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from domain.channels import DeliveryStatus, advance_status, conversation_room, normalize_status
from domain.credits import Blocked, Charged, CreditPolicy, charge_words
from domain.sanitize import sanitize_text
from domain.words import count_words
from infra import inbox, ledger, tenants
from schemas.channel_events import ConversationUpdated, MessageStatus
from schemas.channels import room_channel, tenant_channel, user_channel
from schemas.commands import (
    AgentReply,
    ChannelStatusUpdate,
    ClassifyMessage,
    InboundChannelMessage,
    OperatorReply,
    SendOutbound,
    agent_reply_ids,
)
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE, CLASSIFY_ACTOR, OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from schemas.socket_events import CreditError, CreditInfo, NewMessage
from workers.effects import FollowUp, Outcome, follow_up, replay
from workers.emits import Emit, emit


class UnknownProviderMessage(Exception):
    """A delivery report arrived before the send that it reports was recorded; retried later."""


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def _charge_tenant(
    conn: asyncpg.Connection, tenant_id: str, words: int, now: float, policy: CreditPolicy, reference: str
) -> Charged | Blocked:
    account = ledger.tenant_account(tenant_id)
    outcome = charge_words(await ledger.lock_or_open(conn, account), words, now, policy)
    if isinstance(outcome, Charged):
        if outcome.credits_charged:
            await ledger.transfer(conn, account, ledger.REVENUE, outcome.credits_charged, "charge", reference)
        await ledger.store_balance(
            conn, account, outcome.balance, words_used=words, credits_charged=outcome.credits_charged
        )
    return outcome


def _tenant_credit_error(tenant_id: str, room_id: str, message_id: str, blocked: Blocked, url: str) -> Emit:
    error = CreditError(
        message=(
            f"Tenant {tenant_id} is out of credit: this message needs {blocked.required} credit(s);"
            f" the tenant has {blocked.credits} credit(s) and {blocked.words_left} words left."
        ),
        clientMessageId=None,
        messageId=message_id,
        roomId=room_id,
        required=blocked.required,
        credits=blocked.credits,
        wordsLeft=blocked.words_left,
        rechargeUrl=url,
    )
    return emit("creditError", tenant_channel(tenant_id), error.model_dump(mode="json"))


async def _store_message(conn: asyncpg.Connection, message: NewMessage, created_ms: int) -> dict:
    payload = message.model_dump(mode="json")
    await conn.execute(
        "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.UUID(message.messageId), message.roomId, message.userId, message.words, payload, _ts(created_ms),
    )  # fmt: skip
    return payload


def _takeover_fields(row: asyncpg.Record, keys: set[str]) -> dict:
    """Who holds the conversation, only when the row says: an absent field means "unchanged"."""
    if "taken_over_by" not in keys:
        return {}
    at = row["taken_over_at"] if "taken_over_at" in keys else None
    return {
        "takenOverBy": row["taken_over_by"],
        "takenOverByName": row["taken_over_name"] if "taken_over_name" in keys else None,
        "takenOverAt": int(at.timestamp() * 1000) if at is not None else None,
    }


def conversation_updated(row: asyncpg.Record, room_id: str, last: str | None, at_ms: int) -> Emit:
    """``conversationUpdated`` for the tenant's operators; classification and takeover fields when the
    row has them."""
    keys = set(row.keys())
    update = ConversationUpdated(
        intent=row["intent"] if "intent" in keys else None,
        confidence=row["confidence"] if "confidence" in keys else None,
        lead=row["lead"] if "lead" in keys else None,
        summary=row["summary"] if "summary" in keys else None,
        conversationId=str(row["conversation_id"]),
        roomId=room_id,
        tenantId=row["tenant_id"],
        channel=row["channel"],
        contact=row["contact"],
        contactName=row["contact_name"],
        lastMessage=last[:200] if last else None,
        lastMessageAt=at_ms,
        **_takeover_fields(row, keys),
    )
    data = update.model_dump(
        mode="json", exclude={"takenOverBy", "takenOverByName", "takenOverAt"} - update.model_fields_set
    )
    return emit("conversationUpdated", tenant_channel(row["tenant_id"]), data)


async def inbound_message(pool: asyncpg.Pool, cmd: InboundChannelMessage, policy: CreditPolicy, url: str) -> Outcome:
    words = count_words(cmd.text)
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, None)) is not None:
            return replay(stored)
        route = await tenants.route(conn, cmd.channel, cmd.address)
        if route is None:
            result = {"reason": "unknown_destination", "channel": cmd.channel, "address": cmd.address}
            await inbox.finish(conn, cmd.command_id, "rejected", result)
            return Outcome(True, "rejected")
        tenant_id = route.tenant_id
        conv = await conn.fetchrow(
            "INSERT INTO conversations (conversation_id, tenant_id, channel, address, contact, contact_name,"
            " last_message_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (tenant_id, channel, contact) DO UPDATE SET"
            " contact_name = coalesce(EXCLUDED.contact_name, conversations.contact_name),"
            " last_message_at = greatest(conversations.last_message_at, EXCLUDED.last_message_at)"
            " RETURNING conversation_id, tenant_id, channel, contact, contact_name, taken_over_by, taken_over_name,"
            " taken_over_at",
            uuid.uuid4(), tenant_id, cmd.channel, cmd.address, cmd.contact, cmd.contact_name,
            _ts(cmd.received_at_ms),
        )  # fmt: skip
        room_id = conversation_room(tenant_id, str(conv["conversation_id"]))
        charged = await _charge_tenant(conn, tenant_id, words, cmd.received_at_ms / 1000, policy, cmd.command_id)
        text = sanitize_text(cmd.text)
        message = NewMessage(
            messageId=cmd.message_id, id=cmd.message_id, roomId=room_id, userId=cmd.contact,
            username=sanitize_text(cmd.contact_name or cmd.contact), message=text, content=text, words=words,
            timestamp=cmd.received_at_ms, kind="inbound",
            creditInfo=CreditInfo(charged=charged.credits_charged, wordsLeft=charged.balance.words_left)
            if isinstance(charged, Charged) else CreditInfo(charged=0, wordsLeft=charged.words_left),
        )  # fmt: skip
        payload = await _store_message(conn, message, cmd.received_at_ms)
        emits = [emit("newMessage", room_channel(room_id), payload),
                 conversation_updated(conv, room_id, text, cmd.received_at_ms)]  # fmt: skip
        if isinstance(charged, Blocked):
            emits.append(_tenant_credit_error(tenant_id, room_id, cmd.message_id, charged, url))
        held = conv["taken_over_by"] is not None
        follow_ups = _agent_follow_ups(cmd, route, str(conv["conversation_id"]), room_id, held=held)
        outcome = Outcome(True, "applied", emits, follow_ups)
        await inbox.finish(
            conn, cmd.command_id, "applied",
            outcome.stored_result(message_id=cmd.message_id, tenant_id=tenant_id, words=words,
                                  paid=isinstance(charged, Charged)),
        )  # fmt: skip
        return outcome


def _agent_follow_ups(
    cmd: InboundChannelMessage, route: tenants.Route, conversation_id: str, room_id: str, *, held: bool
) -> list[FollowUp]:
    """Every inbound message is classified; a tenant with auto-reply on also gets an AI answer, unless
    an operator has taken the conversation over (``held``)."""
    classify = ClassifyMessage(
        command_id=f"classify:{cmd.message_id}", tenant_id=route.tenant_id, conversation_id=conversation_id,
        message_id=cmd.message_id, requested_at_ms=cmd.received_at_ms,
    )  # fmt: skip
    follow_ups = [follow_up(AI_QUEUE, CLASSIFY_ACTOR, classify)]
    if route.auto_reply and not held:
        command_id, reply_id = agent_reply_ids(cmd.message_id)
        reply = AgentReply(
            command_id=command_id, reply_id=reply_id, trigger_message_id=cmd.message_id, room_id=room_id,
            asker=ledger.tenant_account(route.tenant_id), tenant_id=route.tenant_id,
            conversation_id=conversation_id, requested_at_ms=cmd.received_at_ms,
        )  # fmt: skip
        follow_ups.append(follow_up(AI_QUEUE, AGENT_REPLY_ACTOR, reply))
    return follow_ups


async def operator_reply(pool: asyncpg.Pool, cmd: OperatorReply, policy: CreditPolicy, url: str) -> Outcome:
    words = count_words(cmd.text)
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.operator_id)) is not None:
            return replay(stored)
        conv = await conn.fetchrow(
            "SELECT conversation_id, tenant_id, channel, address, contact, contact_name, taken_over_by,"
            " taken_over_name, taken_over_at FROM conversations WHERE conversation_id = $1 AND tenant_id = $2",
            uuid.UUID(cmd.conversation_id), cmd.tenant_id,
        )  # fmt: skip
        if conv is None:
            error = {"code": "bad_request", "message": "unknown conversation", "event": "sendMessage",
                     "roomId": room_id, "messageId": cmd.message_id}  # fmt: skip
            outcome = Outcome(True, "rejected", [emit("error", user_channel(cmd.operator_id), error)])
            await inbox.finish(conn, cmd.command_id, "rejected", outcome.stored_result())
            return outcome
        charged = await _charge_tenant(conn, cmd.tenant_id, words, cmd.accepted_at_ms / 1000, policy, cmd.command_id)
        if isinstance(charged, Blocked):
            outcome = Outcome(
                True, "rejected", [_tenant_credit_error(cmd.tenant_id, room_id, cmd.message_id, charged, url)]
            )
            await inbox.finish(conn, cmd.command_id, "rejected", outcome.stored_result(words=words))
            return outcome
        text = sanitize_text(cmd.text)
        await conn.execute(
            "INSERT INTO outbound_messages (message_id, conversation_id, tenant_id, channel, address, contact, body)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            uuid.UUID(cmd.message_id), conv["conversation_id"], cmd.tenant_id, conv["channel"], conv["address"],
            conv["contact"], cmd.text,
        )  # fmt: skip
        await conn.execute(
            "UPDATE conversations SET last_message_at = greatest(last_message_at, $2) WHERE conversation_id = $1",
            conv["conversation_id"], _ts(cmd.accepted_at_ms),
        )  # fmt: skip
        message = NewMessage(
            messageId=cmd.message_id, id=cmd.message_id, roomId=room_id, userId=cmd.operator_id,
            username=sanitize_text(cmd.operator_name), message=text, content=text, words=words,
            timestamp=cmd.accepted_at_ms, kind="outbound", clientMessageId=cmd.client_message_id,
            creditInfo=CreditInfo(charged=charged.credits_charged, wordsLeft=charged.balance.words_left),
        )  # fmt: skip
        payload = await _store_message(conn, message, cmd.accepted_at_ms)
        send = SendOutbound(command_id=f"send:{cmd.message_id}", message_id=cmd.message_id)
        outcome = Outcome(
            True, "applied",
            [emit("newMessage", room_channel(room_id), payload),
             conversation_updated(conv, room_id, text, cmd.accepted_at_ms)],
            [follow_up(OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, send)],
        )  # fmt: skip
        await inbox.finish(
            conn, cmd.command_id, "applied", outcome.stored_result(message_id=cmd.message_id, words=words)
        )
        return outcome


async def status_update(pool: asyncpg.Pool, cmd: ChannelStatusUpdate) -> Outcome:
    reported = normalize_status(cmd.status)
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, None)) is not None:
            return replay(stored)
        row = await conn.fetchrow(
            "SELECT message_id, tenant_id, conversation_id, status FROM outbound_messages"
            " WHERE provider_message_id = $1 FOR UPDATE",
            cmd.provider_message_id,
        )
        if row is None:
            raise UnknownProviderMessage(cmd.provider_message_id)  # rolls back the claim; retried
        new = advance_status(DeliveryStatus(row["status"]), reported)
        if new is None:
            outcome = Outcome(True, "applied")
            await inbox.finish(conn, cmd.command_id, "applied", outcome.stored_result(ignored=True))
            return outcome
        await conn.execute(
            "UPDATE outbound_messages SET status = $2, error_code = coalesce($3, error_code),"
            " error_message = coalesce($4, error_message), updated_at = now() WHERE message_id = $1",
            row["message_id"], new.value, cmd.error_code, cmd.error_message,
        )  # fmt: skip
        room_id = conversation_room(row["tenant_id"], str(row["conversation_id"]))
        status = MessageStatus(
            messageId=str(row["message_id"]), roomId=room_id, status=new.value,
            errorCode=cmd.error_code, errorMessage=cmd.error_message,
        ).model_dump(mode="json")  # fmt: skip
        emits = [emit("messageStatus", room_channel(room_id), status)]
        if new is DeliveryStatus.FAILED:
            emits.append(emit("messageStatus", tenant_channel(row["tenant_id"]), status))
        outcome = Outcome(True, "applied", emits)
        await inbox.finish(conn, cmd.command_id, "applied", outcome.stored_result())
        return outcome
