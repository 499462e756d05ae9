"""The AI agent's database steps: look up a stored answer, store a reply or a classification.

A reply is stored, charged and recorded (tokens, latency) in one transaction with its inbox
row, so a redelivered command finds it and makes no second model call and no second charge.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from domain.channels import conversation_room
from domain.credits import Blocked, Charged, CreditPolicy, charge_words
from domain.plans import PlanCatalog
from domain.sanitize import sanitize_text
from domain.words import count_words
from infra import inbox, ledger, receivables
from schemas.ai import AgentError, Classification
from schemas.channels import room_channel, tenant_channel, user_channel
from schemas.commands import AgentReply, ClassifyMessage, SendOutbound
from schemas.queues import OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from schemas.socket_events import CreditError, CreditInfo, NewMessage
from workers import quotas
from workers.channel_service import conversation_updated
from workers.effects import Outcome, follow_up, replay
from workers.emits import Emit, emit
from workers.providers.model import Completion
from workers.quotas import QuotaBlock

AGENT_USER_ID = "agent"


async def stored_outcome(conn: asyncpg.Connection | asyncpg.Pool, command_id: str) -> Outcome | None:
    """The stored answer of a command already applied or rejected, if any."""
    row = await conn.fetchrow(
        "SELECT status, result FROM inbox WHERE command_id = $1 AND status <> 'failed'", command_id
    )
    return replay(inbox.Stored(row["status"], row["result"])) if row else None


@dataclass(frozen=True, slots=True)
class ReplyInputs:
    """What answering a trigger needs from the database, read on one connection."""

    stored: Outcome | None  # answered before: carry this out again, ask nothing
    available: int = 0  # words the asker can pay for
    credits: int = 0
    words_left: int = 0
    history: list[dict] = field(default_factory=list)
    system_prompt: str = ""
    owed: int = 0  # credits a refunded purchase left owed (infra.receivables): no call while unpaid
    quota: QuotaBlock | None = None  # the asker's plan allows no more AI tokens today
    taken_over: bool = False  # an operator holds the conversation (0010): no auto-reply


async def reply_inputs(
    pool: asyncpg.Pool, cmd: AgentReply, policy: CreditPolicy, limit: int, plans: PlanCatalog
) -> ReplyInputs:
    async with pool.acquire() as conn:
        if (stored := await stored_outcome(conn, cmd.command_id)) is not None:
            return ReplyInputs(stored)
        available, credits, words_left = await words_available(conn, cmd.asker, policy)
        owed = await receivables.outstanding(conn, cmd.asker)
        available = max(0, available - owed * policy.words_per_credit)  # owed credits are settled first
        history = await context(conn, cmd.room_id, cmd.trigger_message_id, limit)
        prompt = await system_prompt(conn, cmd.tenant_id)
        quota = await quotas.ai_token_block(conn, plans, cmd.asker_user_id, time.time()) if cmd.asker_user_id else None
        taken_over = bool(cmd.conversation_id) and bool(
            await conn.fetchval(
                "SELECT taken_over_by IS NOT NULL FROM conversations WHERE conversation_id = $1",
                uuid.UUID(cmd.conversation_id),
            )
        )
        return ReplyInputs(None, available, credits, words_left, history, prompt, owed, quota, taken_over)


async def close_with(pool: asyncpg.Pool, command_id: str, kind: str, user_id: str | None, emits: list[Emit],
                     **result: object) -> Outcome:  # fmt: skip
    """Record a command that ends without a reply (not configured, no credit, model failed)."""
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, command_id, kind, user_id)) is not None:
            return replay(stored)
        outcome = Outcome(True, "rejected", emits)
        await inbox.finish(conn, command_id, "rejected", outcome.stored_result(**result))
        return outcome


def asker_channel(cmd: AgentReply) -> str:
    if cmd.asker_user_id:
        return user_channel(cmd.asker_user_id)
    return tenant_channel(cmd.tenant_id or cmd.asker.split(":", 1)[1])


def agent_error(cmd: AgentReply, code: str, message: str) -> Emit:
    error = AgentError(replyTo=cmd.trigger_message_id, roomId=cmd.room_id, code=code, message=message)
    return emit("agentError", room_channel(cmd.room_id), error.model_dump(mode="json"))


def credit_error(cmd: AgentReply, required: int, credits: int, words_left: int, url: str, why: str) -> Emit:
    error = CreditError(
        message=why, clientMessageId=None, messageId=cmd.reply_id, roomId=cmd.room_id, required=required,
        credits=credits, wordsLeft=words_left, rechargeUrl=url,
    )  # fmt: skip
    return emit("creditError", asker_channel(cmd), error.model_dump(mode="json"))


async def words_available(conn: asyncpg.Connection, account: str, policy: CreditPolicy) -> tuple[int, int, int]:
    """(words available, credits, words left) of an account; zeros for an account never seen."""
    stats = await ledger.account_stats(conn, account)
    if stats is None:
        return 0, 0, 0
    now = time.time()
    return stats.balance.words_available(now, policy), stats.balance.credits, stats.balance.live_words_left(now)


async def context(
    conn: asyncpg.Connection | asyncpg.Pool, room_id: str, trigger_message_id: str, limit: int
) -> list[dict]:
    """The room's messages up to and including the trigger, oldest first."""
    rows = await conn.fetch(
        "SELECT payload FROM (SELECT seq, payload FROM messages WHERE room_id = $1 AND seq <="
        " (SELECT seq FROM messages WHERE message_id = $2) ORDER BY seq DESC LIMIT $3) recent ORDER BY seq",
        room_id, uuid.UUID(trigger_message_id), limit,
    )  # fmt: skip
    return [r["payload"] for r in rows]


async def system_prompt(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str | None) -> str:
    if tenant_id is None:
        return ""
    return await conn.fetchval("SELECT system_prompt FROM tenants WHERE tenant_id = $1", tenant_id) or ""


async def record_call(
    conn: asyncpg.Connection | asyncpg.Pool,
    command_id: str,
    purpose: str,
    asker: str,
    tenant_id: str | None,
    model: str,
    completion: Completion | None,
    *,
    latency_ms: int = 0,
    error_code: str | None = None,
) -> None:
    """Tokens and latency of one model call, for quotas and billing."""
    await conn.execute(
        "INSERT INTO ai_usage (call_id, command_id, purpose, asker, tenant_id, model, prompt_tokens,"
        " completion_tokens, latency_ms, status, error_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        uuid.uuid4(), command_id, purpose, asker, tenant_id, completion.model if completion else model,
        completion.prompt_tokens if completion else 0, completion.completion_tokens if completion else 0,
        completion.latency_ms if completion else latency_ms, "ok" if completion else "error", error_code,
    )  # fmt: skip


async def store_reply(
    pool: asyncpg.Pool, cmd: AgentReply, completion: Completion, policy: CreditPolicy, agent_name: str, url: str
) -> Outcome:
    """Charge the asker for the reply's words, store it, and (on a channel) queue it for sending."""
    words = count_words(completion.text)
    now_ms = int(time.time() * 1000)
    purpose = "auto_reply" if cmd.conversation_id else "reply"
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.asker_user_id)) is not None:
            return replay(stored)
        await record_call(conn, cmd.command_id, purpose, cmd.asker, cmd.tenant_id, completion.model, completion)
        if cmd.conversation_id and await _taken_over(conn, cmd.conversation_id):
            result = Outcome(True, "rejected")  # an operator took over while the model answered: not sent
            await inbox.finish(conn, cmd.command_id, "rejected", result.stored_result(reason="taken_over"))
            return result
        balance, owed = await receivables.settle(conn, cmd.asker, await ledger.lock_or_open(conn, cmd.asker))
        if owed:
            emits = [credit_error(cmd, owed, balance.credits, balance.words_left, url, receivables.debt_message(owed))]
            result = Outcome(True, "rejected", emits)
            await inbox.finish(conn, cmd.command_id, "rejected", result.stored_result(words=words, owed=owed))
            return result
        outcome = charge_words(balance, words, now_ms / 1000, policy)
        if isinstance(outcome, Blocked):
            emits = [credit_error(cmd, outcome.required, outcome.credits, outcome.words_left, url,
                                  f"Insufficient credits for the agent's {words}-word answer.")]  # fmt: skip
            result = Outcome(True, "rejected", emits)
            await inbox.finish(conn, cmd.command_id, "rejected", result.stored_result(words=words))
            return result
        await _charge(conn, cmd, outcome, words)
        text = sanitize_text(completion.text)
        message = NewMessage(
            messageId=cmd.reply_id, id=cmd.reply_id, roomId=cmd.room_id, userId=AGENT_USER_ID, username=agent_name,
            message=text, content=text, words=words, timestamp=now_ms, kind="ai", replyTo=cmd.trigger_message_id,
            creditInfo=CreditInfo(charged=outcome.credits_charged, wordsLeft=outcome.balance.words_left),
        ).model_dump(mode="json")  # fmt: skip
        await conn.execute(
            "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            uuid.UUID(cmd.reply_id), cmd.room_id, AGENT_USER_ID, words, message,
            datetime.fromtimestamp(now_ms / 1000, UTC),
        )  # fmt: skip
        emits = [emit("newMessage", room_channel(cmd.room_id), message)]
        follow_ups = []
        if cmd.conversation_id and cmd.tenant_id:
            conv = await conn.fetchrow(
                "UPDATE conversations SET last_message_at = greatest(last_message_at, now())"
                " WHERE conversation_id = $1 RETURNING *",
                uuid.UUID(cmd.conversation_id),
            )
            await conn.execute(
                "INSERT INTO outbound_messages (message_id, conversation_id, tenant_id, channel, address, contact,"
                " body) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                uuid.UUID(cmd.reply_id), conv["conversation_id"], cmd.tenant_id, conv["channel"], conv["address"],
                conv["contact"], completion.text,
            )  # fmt: skip
            emits.append(conversation_updated(conv, cmd.room_id, text, now_ms))
            send = SendOutbound(command_id=f"send:{cmd.reply_id}", message_id=cmd.reply_id)
            follow_ups.append(follow_up(OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, send))
        result = Outcome(True, "applied", emits, follow_ups)
        await inbox.finish(conn, cmd.command_id, "applied", result.stored_result(message_id=cmd.reply_id, words=words))
        return result


async def _taken_over(conn: asyncpg.Connection, conversation_id: str) -> bool:
    """Whether an operator holds the conversation; the row lock orders this against a takeover."""
    return bool(
        await conn.fetchval(
            "SELECT taken_over_by IS NOT NULL FROM conversations WHERE conversation_id = $1 FOR UPDATE",
            uuid.UUID(conversation_id),
        )
    )


async def _charge(conn: asyncpg.Connection, cmd: AgentReply, outcome: Charged, words: int) -> None:
    if outcome.credits_charged:
        await ledger.transfer(conn, cmd.asker, ledger.REVENUE, outcome.credits_charged, "charge", cmd.command_id)
    await ledger.store_balance(
        conn, cmd.asker, outcome.balance, words_used=words, credits_charged=outcome.credits_charged
    )


async def classify_inputs(pool: asyncpg.Pool, cmd: ClassifyMessage, limit: int) -> tuple[Outcome | None, list[dict]]:
    """(the stored outcome if classified before, else None; the conversation's recent messages)."""
    async with pool.acquire() as conn:
        if (stored := await stored_outcome(conn, cmd.command_id)) is not None:
            return stored, []
        room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
        return None, await context(conn, room_id, cmd.message_id, limit)


async def store_classification(
    pool: asyncpg.Pool, cmd: ClassifyMessage, result: Classification, completion: Completion
) -> Outcome:
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, None)) is not None:
            return replay(stored)
        await record_call(conn, cmd.command_id, "classify", ledger.tenant_account(cmd.tenant_id), cmd.tenant_id,
                          completion.model, completion)  # fmt: skip
        conv = await conn.fetchrow(
            "UPDATE conversations SET intent = $3, confidence = $4, lead = $5, summary = $6, classified_at = now()"
            " WHERE conversation_id = $1 AND tenant_id = $2 RETURNING *",
            uuid.UUID(cmd.conversation_id), cmd.tenant_id, result.intent, result.confidence, result.lead,
            sanitize_text(result.summary),
        )  # fmt: skip
        emits = (
            [conversation_updated(conv, room_id, None, int(conv["last_message_at"].timestamp() * 1000))] if conv else []
        )
        outcome = Outcome(True, "applied", emits)
        await inbox.finish(conn, cmd.command_id, "applied", outcome.stored_result(**result.model_dump()))
        return outcome
