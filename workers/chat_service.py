"""Apply chat commands: one transaction holds the inbox row, the charge and the stored message."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from domain.agent import mentions
from domain.credits import Balance, Blocked, Charged, CreditPolicy, charge_words
from domain.plans import PlanCatalog
from domain.sanitize import sanitize_text
from domain.words import count_words
from infra import inbox, ledger, receivables
from schemas.channels import room_channel, user_channel
from schemas.commands import AgentReply, MarkMessageRead, SendChatMessage, agent_reply_ids
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE
from schemas.socket_events import CreditError, CreditInfo, CreditWarning, MessageRead, NewMessage
from workers import quotas
from workers.effects import Outcome, follow_up, replay
from workers.emits import emit


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
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.user_id)) is not None:
            return replay(stored)
        account = ledger.user_account(cmd.user_id)
        balance = await ledger.lock_or_open(conn, account, signup_credits)
        balance, owed = await receivables.settle(conn, account, balance)
        if owed and words:
            emits = [emit("creditError", user_channel(cmd.user_id), _debt_error(cmd, balance, owed, recharge_url))]
            await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits, "words": words, "owed": owed})
            return Outcome(True, "rejected", emits)
        if plans is not None and (block := await quotas.message_block(conn, plans, cmd.user_id, now)):
            event = block.event(cmd.message_id, cmd.client_message_id, cmd.room_id)
            emits = [emit("quotaExceeded", user_channel(cmd.user_id), event)]
            await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits, "words": words})
            return Outcome(True, "rejected", emits)
        outcome = charge_words(balance, words, now, policy)
        if isinstance(outcome, Blocked):
            emits = [emit("creditError", user_channel(cmd.user_id), _credit_error(cmd, outcome, recharge_url))]
            await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits, "words": words})
            return Outcome(True, "rejected", emits)

        if outcome.credits_charged:
            await ledger.transfer(
                conn, account, ledger.REVENUE, outcome.credits_charged,
                "charge", cmd.command_id, f"{words} words in {cmd.room_id}",
            )  # fmt: skip
        await ledger.store_balance(
            conn, account, outcome.balance, words_used=words, credits_charged=outcome.credits_charged
        )
        await quotas.count_message(conn, cmd.user_id, now)
        message = _new_message(cmd, words, outcome)
        await conn.execute(
            "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            cmd.message_id, cmd.room_id, cmd.user_id, words, message,
            datetime.fromtimestamp(now, UTC),
        )  # fmt: skip
        emits = [emit("newMessage", room_channel(cmd.room_id), message)]
        if outcome.warn_low_balance:
            emits.append(emit("creditWarning", user_channel(cmd.user_id), _credit_warning(outcome, policy)))
        follow_ups = []
        if agent_handle and mentions(cmd.message, agent_handle):
            ai_command_id, reply_id = agent_reply_ids(cmd.message_id)
            ask = AgentReply(
                command_id=ai_command_id, reply_id=reply_id, trigger_message_id=cmd.message_id,
                room_id=cmd.room_id, asker=account, asker_user_id=cmd.user_id, requested_at_ms=cmd.accepted_at_ms,
            )  # fmt: skip
            follow_ups.append(follow_up(AI_QUEUE, AGENT_REPLY_ACTOR, ask))
        result = Outcome(True, "applied", emits, follow_ups)
        await inbox.finish(
            conn, cmd.command_id, "applied",
            result.stored_result(message_id=cmd.message_id, words=words, charged=outcome.credits_charged,
                                 free=outcome.free_words),
        )  # fmt: skip
        return result


def _new_message(cmd: SendChatMessage, words: int, outcome: Charged) -> dict:
    text = sanitize_text(cmd.message)
    return NewMessage(
        messageId=cmd.message_id,
        id=cmd.message_id,
        roomId=cmd.room_id,
        userId=cmd.user_id,
        username=sanitize_text(cmd.username),
        message=text,
        content=text,
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


def _debt_error(cmd: SendChatMessage, balance: Balance, owed: int, recharge_url: str) -> dict:
    return CreditError(
        message=receivables.debt_message(owed), clientMessageId=cmd.client_message_id, messageId=cmd.message_id,
        roomId=cmd.room_id, required=owed, credits=balance.credits, wordsLeft=balance.words_left,
        rechargeUrl=recharge_url,
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
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.user_id)) is not None:
            return replay(stored)
        stored_mark = await conn.fetchval(
            "INSERT INTO read_marks (room_id, user_id, message_id)"
            " SELECT room_id, $2, message_id FROM messages WHERE message_id = $3 AND room_id = $1"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET message_id = EXCLUDED.message_id, updated_at = now()"
            " RETURNING true",
            cmd.room_id, cmd.user_id, cmd.message_id,
        )  # fmt: skip
        if not stored_mark:
            error = {"code": "bad_request", "message": f"unknown message {cmd.message_id} in {cmd.room_id}",
                     "event": "mark-read", "roomId": cmd.room_id, "messageId": cmd.message_id}  # fmt: skip
            emits = [emit("error", user_channel(cmd.user_id), error)]
            await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits})
            return Outcome(True, "rejected", emits)
        read = MessageRead(roomId=cmd.room_id, messageId=cmd.message_id, userId=cmd.user_id)
        emits = [emit("messageRead", room_channel(cmd.room_id), read.model_dump(mode="json"))]
        await inbox.finish(conn, cmd.command_id, "applied", {"emits": emits})
        return Outcome(True, "applied", emits)
