"""Apply chat commands: one transaction holds the inbox row, the charge and the stored message."""

from __future__ import annotations

import asyncpg

from domain.agent import mentions
from domain.credits import Blocked, Charged, CreditPolicy
from domain.plans import PlanCatalog
from domain.sanitize import sanitize_text
from domain.spending import InDebt, OverQuota, debt_message
from domain.words import count_words
from infra import inbox, ledger, messages, plan_usage
from schemas.channels import room_channel, user_channel
from schemas.commands import AgentReply, MarkMessageRead, SendChatMessage, agent_reply_ids
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE
from schemas.socket_events import CreditError, CreditInfo, CreditWarning, MessageRead, NewMessage
from workers import charging, quotas
from workers.effects import Outcome, follow_up
from workers.emits import emit
from workers.unit_of_work import command_tx


async def send_message(
    pool: asyncpg.Pool,
    cmd: SendChatMessage,
    policy: CreditPolicy,
    signup_credits: int,
    recharge_url: str,
    agent_handle: str | None = None,
    plans: PlanCatalog | None = None,
) -> Outcome:
    now = cmd.accepted_at_ms / 1000
    words = count_words(cmd.message)
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.user_id)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        account = ledger.user_account(cmd.user_id)
        spend = await charging.spend_words(
            conn,
            account,
            words,
            now=now,
            policy=policy,
            reference=cmd.command_id,
            memo=f"{words} words in {cmd.room_id}",
            signup_credits=signup_credits,
            quota=(lambda: quotas.message_quota(conn, plans, cmd.user_id, now)) if plans is not None else None,
        )
        user = user_channel(cmd.user_id)
        match spend.verdict:
            case InDebt(owed):
                error = _debt_error(cmd, spend.balance.credits, spend.balance.words_left, owed, recharge_url)
                return tx.reject([emit("creditError", user, error)], words=words, owed=owed)
            case OverQuota(quota):
                event = quotas.quota_exceeded(quota, cmd.message_id, cmd.client_message_id, cmd.room_id)
                return tx.reject([emit("quotaExceeded", user, event)], words=words)
            case Blocked() as blocked:
                return tx.reject([emit("creditError", user, _credit_error(cmd, blocked, recharge_url))], words=words)
        charged = spend.verdict
        assert isinstance(charged, Charged)
        await plan_usage.count_message(conn, cmd.user_id, now)
        message = _new_message(cmd, words, charged)
        await messages.store(conn, cmd.message_id, cmd.room_id, cmd.user_id, words, message, cmd.accepted_at_ms)
        emits = [emit("newMessage", room_channel(cmd.room_id), message)]
        if charged.warn_low_balance:
            emits.append(emit("creditWarning", user, _credit_warning(charged, policy)))
        follow_ups = []
        if agent_handle and mentions(cmd.message, agent_handle):
            ai_command_id, reply_id = agent_reply_ids(cmd.message_id)
            ask = AgentReply(
                command_id=ai_command_id, reply_id=reply_id, trigger_message_id=cmd.message_id,
                room_id=cmd.room_id, asker=account, asker_user_id=cmd.user_id, requested_at_ms=cmd.accepted_at_ms,
            )  # fmt: skip
            follow_ups.append(follow_up(AI_QUEUE, AGENT_REPLY_ACTOR, ask))
        return tx.apply(emits, follow_ups, message_id=cmd.message_id, words=words,
                        charged=charged.credits_charged, free=charged.free_words)  # fmt: skip


def _new_message(cmd: SendChatMessage, words: int, outcome: Charged) -> dict:
    text = sanitize_text(cmd.message)
    return NewMessage(
        messageId=cmd.message_id,
        roomId=cmd.room_id,
        userId=cmd.user_id,
        username=sanitize_text(cmd.username),
        message=text,
        words=words,
        timestamp=cmd.accepted_at_ms,
        kind="user",
        clientMessageId=cmd.client_message_id,
        creditInfo=CreditInfo(charged=outcome.credits_charged, wordsLeft=outcome.balance.words_left),
    ).model_dump(mode="json")


def _credit_error(cmd: SendChatMessage, blocked: Blocked, recharge_url: str) -> dict:
    return CreditError(
        message=(
            f"Insufficient credits: this message has {blocked.words} words and needs {blocked.required}"
            f" credit(s); you have {blocked.credits} credit(s) and {blocked.words_left} words left."
        ),
        clientMessageId=cmd.client_message_id,
        messageId=cmd.message_id,
        roomId=cmd.room_id,
        required=blocked.required,
        credits=blocked.credits,
        wordsLeft=blocked.words_left,
        rechargeUrl=recharge_url,
    ).model_dump(mode="json")


def _debt_error(cmd: SendChatMessage, credits: int, words_left: int, owed: int, recharge_url: str) -> dict:
    return CreditError(
        message=debt_message(owed), clientMessageId=cmd.client_message_id, messageId=cmd.message_id,
        roomId=cmd.room_id, required=owed, credits=credits, wordsLeft=words_left, rechargeUrl=recharge_url,
    ).model_dump(mode="json")  # fmt: skip


def _credit_warning(outcome: Charged, policy: CreditPolicy) -> dict:
    remaining = outcome.balance.credits * policy.words_per_credit + outcome.balance.words_left
    return CreditWarning(
        message=f"Low balance: {remaining} words remaining. Top up to keep chatting.",
        credits=outcome.balance.credits,
        wordsLeft=outcome.balance.words_left,
        wordsRemaining=remaining,
    ).model_dump(mode="json")


async def mark_read(pool: asyncpg.Pool, cmd: MarkMessageRead) -> Outcome:
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.user_id)) as tx:
        if tx.replayed:
            return tx.replayed
        if not await messages.mark_read(tx.conn, cmd.room_id, cmd.user_id, cmd.message_id):
            error = {"code": "bad_request", "message": f"unknown message {cmd.message_id} in {cmd.room_id}",
                     "event": "mark-read", "roomId": cmd.room_id, "messageId": cmd.message_id}  # fmt: skip
            return tx.reject([emit("error", user_channel(cmd.user_id), error)])
        read = MessageRead(roomId=cmd.room_id, messageId=cmd.message_id, userId=cmd.user_id)
        return tx.apply([emit("messageRead", room_channel(cmd.room_id), read.model_dump(mode="json"))])
