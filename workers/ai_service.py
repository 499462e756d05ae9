"""The AI agent's database steps: look up a stored answer, store a reply or a classification.

A reply is stored, charged and recorded (tokens, latency) in one transaction with its inbox
row, so a redelivered command finds it and makes no second model call and no second charge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from domain.channels import conversation_room
from domain.credits import Balance, Blocked, Charged, CreditPolicy
from domain.plans import PlanCatalog
from domain.sanitize import sanitize_text
from domain.spending import InDebt, NeedsCredits, OverQuota, Quota, agent_call_gate, debt_message
from domain.words import count_words
from infra import ai_usage, conversations, inbox, ledger, messages, receivables, tenants
from infra.db import Conn, ConnOrPool
from schemas.ai import AgentError, Classification
from schemas.channels import room_channel, tenant_channel, user_channel
from schemas.commands import AgentReply, ClassifyMessage, SendOutbound
from schemas.queues import OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from schemas.socket_events import CreditError, CreditInfo, NewMessage
from workers import charging, quotas
from workers.channel_service import conversation_updated
from workers.effects import Outcome, follow_up, replay
from workers.emits import Emit, emit
from workers.providers.model import Completion
from workers.unit_of_work import command_tx

AGENT_USER_ID = "agent"


def _key(cmd: AgentReply | ClassifyMessage) -> inbox.Key:
    """The inbox row of an agent command: a reply concerns its asker; a classification, nobody."""
    return inbox.Key(cmd.command_id, cmd.type, cmd.asker_user_id if isinstance(cmd, AgentReply) else None)


async def stored_outcome(conn: ConnOrPool, command_id: str) -> Outcome | None:
    """The stored answer of a command already applied or rejected, if any."""
    stored = await inbox.stored(conn, command_id)
    return replay(stored) if stored is not None else None


@dataclass(frozen=True, slots=True)
class ReplyInputs:
    """What answering a trigger needs from the database, read on one connection."""

    stored: Outcome | None  # answered before: carry this out again, ask nothing
    balance: Balance = field(default_factory=Balance)  # the asker's (empty for an account never seen)
    history: list[dict] = field(default_factory=list)
    system_prompt: str = ""
    owed: int = 0  # credits a refunded purchase left owed (infra.receivables): no call while unpaid
    quota: Quota | None = None  # the asker's plan allows no more AI tokens today
    taken_over: bool = False  # an operator holds the conversation (0010): no auto-reply


async def reply_inputs(
    pool: asyncpg.Pool, cmd: AgentReply, policy: CreditPolicy, limit: int, plans: PlanCatalog
) -> ReplyInputs:
    async with pool.acquire() as conn:
        if (stored := await stored_outcome(conn, cmd.command_id)) is not None:
            return ReplyInputs(stored)
        stats = await ledger.account_stats(conn, cmd.asker)
        owed = await receivables.outstanding(conn, cmd.asker)
        history = await messages.context(conn, cmd.room_id, cmd.trigger_message_id, limit)
        prompt = await tenants.system_prompt(conn, cmd.tenant_id)
        quota = await quotas.ai_token_block(conn, plans, cmd.asker_user_id, time.time()) if cmd.asker_user_id else None
        taken_over = await conversations.is_taken_over(conn, cmd.conversation_id) if cmd.conversation_id else False
        balance = stats.balance if stats is not None else Balance()
        return ReplyInputs(None, balance, history, prompt, owed, quota, taken_over)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the agent does not call the model for a reply, and what the asker is told."""

    emits: list[Emit]
    reason: str


def refusal_before_call(
    cmd: AgentReply, inputs: ReplyInputs, min_credits: int, now: float, policy: CreditPolicy, url: str
) -> Refusal | None:
    """The pre-call gate (:func:`domain.spending.agent_call_gate`) for this asker; None: call the model."""
    balance = inputs.balance
    credits, words_left = balance.credits, balance.live_words_left(now)
    match agent_call_gate(balance, inputs.owed, min_credits, inputs.quota, now, policy):
        case InDebt(owed):
            error = credit_error(cmd, owed, credits, words_left, url, debt_message(owed))
            return Refusal([error], "receivable_outstanding")
        case NeedsCredits(required):
            why = f"The AI agent needs at least {required} credit(s) before it answers."
            return Refusal([credit_error(cmd, required, credits, words_left, url, why)], "insufficient_credits")
        case OverQuota(quota) if cmd.asker_user_id:
            event = quotas.quota_exceeded(quota, cmd.reply_id, None, cmd.room_id)
            return Refusal([emit("quotaExceeded", user_channel(cmd.asker_user_id), event)], "quota_exceeded")
    return None


async def close_with(
    pool: asyncpg.Pool, cmd: AgentReply | ClassifyMessage, emits: list[Emit], **result: Any
) -> Outcome:
    """Record a command that ends without a reply (not configured, no credit, model failed)."""
    async with command_tx(pool, _key(cmd)) as tx:
        if tx.replayed:
            return tx.replayed
        return tx.reject(emits, **result)


def asker_channel(cmd: AgentReply) -> str:
    if cmd.asker_user_id:
        return user_channel(cmd.asker_user_id)
    return tenant_channel(cmd.tenant_id or cmd.asker.split(":", 1)[1])


def agent_error(cmd: AgentReply, code: str, message: str) -> Emit:
    error = AgentError(replyTo=cmd.trigger_message_id, roomId=cmd.room_id, code=code, message=message)
    return emit("agentError", room_channel(cmd.room_id), error.model_dump(mode="json"))


def credit_error(cmd: AgentReply, required: int, credits: int, words_left: int, url: str, why: str) -> Emit:
    error = CreditError(
        message=why,
        clientMessageId=None,
        messageId=cmd.reply_id,
        roomId=cmd.room_id,
        required=required,
        credits=credits,
        wordsLeft=words_left,
        rechargeUrl=url,
    )
    return emit("creditError", asker_channel(cmd), error.model_dump(mode="json"))


async def record_call(
    conn: Conn, command_id: str, purpose: str, asker: str, tenant_id: str | None, completion: Completion
) -> None:
    """Tokens and latency of one model call, for quotas and billing."""
    tokens = (completion.prompt_tokens, completion.completion_tokens)
    await ai_usage.record(conn, command_id, purpose, asker, tenant_id, completion.model, *tokens, completion.latency_ms)


async def record_failed_call(
    pool: asyncpg.Pool, cmd: AgentReply | ClassifyMessage, model: str, latency_ms: int, error_code: str
) -> None:
    """A model call that failed: no tokens, its latency and error code."""
    if isinstance(cmd, AgentReply):
        purpose, asker, tenant_id = _purpose(cmd), cmd.asker, cmd.tenant_id
    else:
        purpose, asker, tenant_id = "classify", ledger.tenant_account(cmd.tenant_id), cmd.tenant_id
    await ai_usage.record(pool, cmd.command_id, purpose, asker, tenant_id, model, 0, 0, latency_ms, error_code)


def _purpose(cmd: AgentReply) -> str:
    return "auto_reply" if cmd.conversation_id else "reply"


async def store_reply(
    pool: asyncpg.Pool, cmd: AgentReply, completion: Completion, policy: CreditPolicy, agent_name: str, url: str
) -> Outcome:
    """Charge the asker for the reply's words, store it, and (on a channel) queue it for sending."""
    words = count_words(completion.text)
    now_ms = int(time.time() * 1000)
    async with command_tx(pool, _key(cmd)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        await record_call(conn, cmd.command_id, _purpose(cmd), cmd.asker, cmd.tenant_id, completion)
        # The row lock orders this against a takeover: an operator who took over while the model
        # answered gets the conversation, and the reply is not sent.
        if cmd.conversation_id and await conversations.is_taken_over(conn, cmd.conversation_id, lock=True):
            return tx.reject(reason="taken_over")
        spend = await charging.spend_words(
            conn, cmd.asker, words, now=now_ms / 1000, policy=policy, reference=cmd.command_id
        )
        match spend.verdict:
            case InDebt(owed):
                left = spend.balance
                error = credit_error(cmd, owed, left.credits, left.words_left, url, debt_message(owed))
                return tx.reject([error], words=words, owed=owed)
            case Blocked() as blocked:
                why = f"Insufficient credits for the agent's {words}-word answer."
                error = credit_error(cmd, blocked.required, blocked.credits, blocked.words_left, url, why)
                return tx.reject([error], words=words)
        charged = spend.verdict
        assert isinstance(charged, Charged)
        text = sanitize_text(completion.text)
        message = NewMessage(
            messageId=cmd.reply_id,
            roomId=cmd.room_id,
            userId=AGENT_USER_ID,
            username=agent_name,
            message=text,
            words=words,
            timestamp=now_ms,
            kind="ai",
            replyTo=cmd.trigger_message_id,
            creditInfo=CreditInfo(charged=charged.credits_charged, wordsLeft=charged.balance.words_left),
        ).model_dump(mode="json")
        await messages.store(conn, cmd.reply_id, cmd.room_id, AGENT_USER_ID, words, message, now_ms)
        emits = [emit("newMessage", room_channel(cmd.room_id), message)]
        follow_ups = []
        if cmd.conversation_id and cmd.tenant_id:
            conv = await conversations.touch_now(conn, cmd.conversation_id)
            assert conv is not None  # conversations are never deleted
            await conversations.queue_outbound(conn, cmd.reply_id, conv, completion.text)
            emits.append(conversation_updated(conv, cmd.room_id, text, now_ms))
            send = SendOutbound(command_id=f"send:{cmd.reply_id}", message_id=cmd.reply_id)
            follow_ups.append(follow_up(OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, send))
        return tx.apply(emits, follow_ups, message_id=cmd.reply_id, words=words)


async def classify_inputs(pool: asyncpg.Pool, cmd: ClassifyMessage, limit: int) -> tuple[Outcome | None, list[dict]]:
    """(the stored outcome if classified before, else None; the conversation's recent messages)."""
    async with pool.acquire() as conn:
        if (stored := await stored_outcome(conn, cmd.command_id)) is not None:
            return stored, []
        room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
        return None, await messages.context(conn, room_id, cmd.message_id, limit)


async def store_classification(
    pool: asyncpg.Pool, cmd: ClassifyMessage, result: Classification, completion: Completion
) -> Outcome:
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    async with command_tx(pool, _key(cmd)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        tenant = ledger.tenant_account(cmd.tenant_id)
        await record_call(conn, cmd.command_id, "classify", tenant, cmd.tenant_id, completion)
        conv = await conversations.classify(
            conn,
            cmd.conversation_id,
            cmd.tenant_id,
            result.intent,
            result.confidence,
            result.lead,
            sanitize_text(result.summary),
        )
        emits = (
            [conversation_updated(conv, room_id, None, int(conv["last_message_at"].timestamp() * 1000))] if conv else []
        )
        return tx.apply(emits, **result.model_dump())
