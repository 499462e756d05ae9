"""Apply channel commands: inbound messages, operator replies and delivery reports.

Words of inbound and outbound channel messages are charged to the tenant under the
same rules as chat. An inbound message is always stored and shown to the tenant's
operators, even when the tenant is out of credit: nothing a contact says is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from domain.channels import DeliveryStatus, advance_status, conversation_room, normalize_status
from domain.credits import Blocked, Charged, CreditPolicy
from domain.sanitize import sanitize_text
from domain.spending import InDebt, Spend, debt_message
from domain.words import count_words
from infra import conversations, inbox, ledger, messages, tenants
from infra.db import Conn
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
from workers import charging
from workers.effects import FollowUp, Outcome, follow_up
from workers.emits import Emit, emit
from workers.unit_of_work import command_tx


class UnknownProviderMessage(Exception):
    """A delivery report arrived before the send that it reports was recorded; retried later."""


async def _charge_tenant(
    conn: Conn, tenant_id: str, words: int, now: float, policy: CreditPolicy, reference: str
) -> Spend:
    """Charge the tenant for a channel message's words under the spending policy; its verdict is
    ``Charged``, ``Blocked`` (out of credit) or ``InDebt``."""
    return await charging.spend_words(
        conn, ledger.tenant_account(tenant_id), words, now=now, policy=policy, reference=reference
    )


def _credit_info(spend: Spend) -> CreditInfo:
    match spend.verdict:
        case Charged() as charged:
            return CreditInfo(charged=charged.credits_charged, wordsLeft=charged.balance.words_left)
        case Blocked() as blocked:
            return CreditInfo(charged=0, wordsLeft=blocked.words_left)
    return CreditInfo(charged=0, wordsLeft=spend.balance.words_left)


def _tenant_credit_error(tenant_id: str, room_id: str, message_id: str, spend: Spend, url: str) -> Emit:
    """``creditError`` for the tenant's operators: the message was not paid for."""
    match spend.verdict:
        case Blocked() as blocked:
            message = (
                f"Tenant {tenant_id} is out of credit: this message needs {blocked.required} credit(s);"
                f" the tenant has {blocked.credits} credit(s) and {blocked.words_left} words left."
            )
            required, credits, words_left = blocked.required, blocked.credits, blocked.words_left
        case InDebt(owed):
            message = debt_message(owed)
            required, credits, words_left = owed, spend.balance.credits, spend.balance.words_left
        case verdict:
            raise ValueError(f"{verdict!r} is not a refusal")
    error = CreditError(
        message=message,
        clientMessageId=None,
        messageId=message_id,
        roomId=room_id,
        required=required,
        credits=credits,
        wordsLeft=words_left,
        rechargeUrl=url,
    )
    return emit("creditError", tenant_channel(tenant_id), error.model_dump(mode="json"))


def _takeover_fields(row: Mapping[str, Any], keys: set[str]) -> dict:
    """Who holds the conversation, only when the row says: an absent field means "unchanged"."""
    if "taken_over_by" not in keys:
        return {}
    at = row["taken_over_at"] if "taken_over_at" in keys else None
    return {
        "takenOverBy": row["taken_over_by"],
        "takenOverByName": row["taken_over_name"] if "taken_over_name" in keys else None,
        "takenOverAt": int(at.timestamp() * 1000) if at is not None else None,
    }


def conversation_updated(row: Mapping[str, Any], room_id: str, last: str | None, at_ms: int) -> Emit:
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
    """Store a contact's message in its conversation and charge its words to the tenant; a message
    to a number or account no tenant owns is rejected (recorded, nothing else)."""
    words = count_words(cmd.text)
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, None)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        route = await tenants.route(conn, cmd.channel, cmd.address)
        if route is None:
            return tx.reject(reason="unknown_destination", channel=cmd.channel, address=cmd.address)
        tenant_id = route.tenant_id
        conv = await conversations.record_inbound(
            conn, tenant_id, cmd.channel, cmd.address, cmd.contact, cmd.contact_name, cmd.received_at_ms
        )
        room_id = conversation_room(tenant_id, str(conv["conversation_id"]))
        spend = await _charge_tenant(conn, tenant_id, words, cmd.received_at_ms / 1000, policy, cmd.command_id)
        text = sanitize_text(cmd.text)
        message = NewMessage(
            messageId=cmd.message_id,
            roomId=room_id,
            userId=cmd.contact,
            username=sanitize_text(cmd.contact_name or cmd.contact),
            message=text,
            words=words,
            timestamp=cmd.received_at_ms,
            kind="inbound",
            creditInfo=_credit_info(spend),
        ).model_dump(mode="json")
        await messages.store(conn, cmd.message_id, room_id, cmd.contact, words, message, cmd.received_at_ms)
        emits = [
            emit("newMessage", room_channel(room_id), message),
            conversation_updated(conv, room_id, text, cmd.received_at_ms),
        ]
        paid = isinstance(spend.verdict, Charged)
        if not paid:
            emits.append(_tenant_credit_error(tenant_id, room_id, cmd.message_id, spend, url))
        held = conv["taken_over_by"] is not None
        follow_ups = _agent_follow_ups(cmd, route, str(conv["conversation_id"]), room_id, held=held)
        return tx.apply(emits, follow_ups, message_id=cmd.message_id, tenant_id=tenant_id, words=words, paid=paid)


def _agent_follow_ups(
    cmd: InboundChannelMessage, route: tenants.Route, conversation_id: str, room_id: str, *, held: bool
) -> list[FollowUp]:
    """Every inbound message is classified; a tenant with auto-reply on also gets an AI answer, unless
    an operator has taken the conversation over (``held``)."""
    classify = ClassifyMessage(
        command_id=f"classify:{cmd.message_id}",
        tenant_id=route.tenant_id,
        conversation_id=conversation_id,
        message_id=cmd.message_id,
        requested_at_ms=cmd.received_at_ms,
    )
    follow_ups = [follow_up(AI_QUEUE, CLASSIFY_ACTOR, classify)]
    if route.auto_reply and not held:
        command_id, reply_id = agent_reply_ids(cmd.message_id)
        reply = AgentReply(
            command_id=command_id,
            reply_id=reply_id,
            trigger_message_id=cmd.message_id,
            room_id=room_id,
            asker=ledger.tenant_account(route.tenant_id),
            tenant_id=route.tenant_id,
            conversation_id=conversation_id,
            requested_at_ms=cmd.received_at_ms,
        )
        follow_ups.append(follow_up(AI_QUEUE, AGENT_REPLY_ACTOR, reply))
    return follow_ups


async def operator_reply(pool: asyncpg.Pool, cmd: OperatorReply, policy: CreditPolicy, url: str) -> Outcome:
    """Charge an operator's reply to the tenant, store it and queue it for sending to the contact;
    refused when the tenant cannot pay for it."""
    words = count_words(cmd.text)
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.operator_id)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        conv = await conversations.to_reply(conn, cmd.conversation_id, cmd.tenant_id)
        if conv is None:
            error = {
                "code": "bad_request",
                "message": "unknown conversation",
                "event": "sendMessage",
                "roomId": room_id,
                "messageId": cmd.message_id,
            }
            return tx.reject([emit("error", user_channel(cmd.operator_id), error)])
        spend = await _charge_tenant(conn, cmd.tenant_id, words, cmd.accepted_at_ms / 1000, policy, cmd.command_id)
        if not isinstance(spend.verdict, Charged):
            return tx.reject([_tenant_credit_error(cmd.tenant_id, room_id, cmd.message_id, spend, url)], words=words)
        text = sanitize_text(cmd.text)
        await conversations.queue_outbound(conn, cmd.message_id, conv, cmd.text)
        await conversations.touch(conn, conv["conversation_id"], cmd.accepted_at_ms)
        message = NewMessage(
            messageId=cmd.message_id,
            roomId=room_id,
            userId=cmd.operator_id,
            username=sanitize_text(cmd.operator_name),
            message=text,
            words=words,
            timestamp=cmd.accepted_at_ms,
            kind="outbound",
            clientMessageId=cmd.client_message_id,
            creditInfo=_credit_info(spend),
        ).model_dump(mode="json")
        await messages.store(conn, cmd.message_id, room_id, cmd.operator_id, words, message, cmd.accepted_at_ms)
        send = SendOutbound(command_id=f"send:{cmd.message_id}", message_id=cmd.message_id)
        emits = [
            emit("newMessage", room_channel(room_id), message),
            conversation_updated(conv, room_id, text, cmd.accepted_at_ms),
        ]
        follow_ups = [follow_up(OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, send)]
        return tx.apply(emits, follow_ups, message_id=cmd.message_id, words=words)


async def status_update(pool: asyncpg.Pool, cmd: ChannelStatusUpdate) -> Outcome:
    """Move an outbound message's delivery status forward (a late or repeated report changes nothing)
    and show it in the conversation; a failure is also shown to the tenant's operators."""
    reported = normalize_status(cmd.status)
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, None)) as tx:
        if tx.replayed:
            return tx.replayed
        delivery = await conversations.lock_delivery(tx.conn, cmd.provider_message_id)
        if delivery is None:
            raise UnknownProviderMessage(cmd.provider_message_id)  # rolls back the claim; retried
        new = advance_status(DeliveryStatus(delivery.status), reported)
        if new is None:
            return tx.apply(ignored=True)
        await conversations.set_delivery_status(
            tx.conn, delivery.message_id, new.value, cmd.error_code, cmd.error_message
        )
        room_id = conversation_room(delivery.tenant_id, str(delivery.conversation_id))
        status = MessageStatus(
            messageId=str(delivery.message_id),
            roomId=room_id,
            status=new.value,
            errorCode=cmd.error_code,
            errorMessage=cmd.error_message,
        ).model_dump(mode="json")
        emits = [emit("messageStatus", room_channel(room_id), status)]
        if new is DeliveryStatus.FAILED:
            emits.append(emit("messageStatus", tenant_channel(delivery.tenant_id), status))
        return tx.apply(emits)
