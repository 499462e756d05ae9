"""Apply a tip: one transaction holds the inbox row, the transfer and the room's tip message.

The ledger reference is the command id ``tip:<sender>:<clientTipId>``, so a tip
moves credits once however often it is sent, redelivered or replayed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from domain.errors import DomainError
from domain.sanitize import sanitize_text
from domain.tips import afford_tip, check_tip
from infra import inbox, ledger, receivables
from schemas.channels import room_channel, user_channel
from schemas.tips import SendTipCommand, TipCreditError, TipFailed, TipInfo, TipMessage, TipReceived, TipSent
from workers.effects import Outcome, replay
from workers.emits import Emit, emit

TIP_KIND = "tip"


async def send_tip(
    pool: asyncpg.Pool,
    cmd: SendTipCommand,
    max_credits: int,
    signup_credits: int,
    recharge_url: str,
) -> Outcome:
    now = cmd.accepted_at_ms / 1000
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.user_id)) is not None:
            return _replay_or_conflict(cmd, stored)
        sender, recipient = ledger.user_account(cmd.user_id), ledger.user_account(cmd.to_user_id)
        try:
            check_tip(cmd.user_id, cmd.to_user_id, cmd.credits, max_credits)
        except DomainError as exc:
            return await _reject(conn, cmd, exc.code, str(exc))
        if not await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", recipient):
            return await _reject(conn, cmd, "unknown_user", f"toUserId: no user {cmd.to_user_id!r} to tip")
        # Lock both rows in one order, so tips crossing between two users cannot deadlock.
        balances = {}
        for account in sorted((sender, recipient)):
            balances[account] = await ledger.lock_or_open(conn, account, signup_credits)
        # An unpaid refund shortfall is settled from the sender's credits first, and blocks spending.
        sender_balance, owed = await receivables.settle(conn, sender, balances[sender])
        if owed:
            return await _credit_error(
                conn,
                cmd,
                "spending_blocked",
                receivables.debt_message(owed),
                sender_balance.credits,
                recharge_url,
                owed,
            )
        if (blocked := afford_tip(sender_balance.credits, cmd.credits)) is not None:
            message = f"Insufficient credits: the tip needs {blocked.required} credit(s); you have {blocked.credits}"
            return await _credit_error(conn, cmd, "insufficient_credits", message, blocked.credits, recharge_url)

        memo = f"tip from {cmd.user_id} to {cmd.to_user_id}" + (f" in {cmd.room_id}" if cmd.room_id else "")
        await ledger.transfer(conn, sender, recipient, cmd.credits, TIP_KIND, cmd.command_id, memo)
        # A tip received is a top-up: it re-arms the recipient's low-balance warning.
        await conn.execute("UPDATE accounts SET low_balance_warned = false WHERE account_id = $1", recipient)
        sender_after = sender_balance.credits - cmd.credits
        recipient_after = balances[recipient].credits + cmd.credits
        emits = _applied_emits(cmd, sender_after, recipient_after)
        stored_message_id = None
        if cmd.room_id is not None:
            message = _tip_message(cmd)
            await conn.execute(
                "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
                " VALUES ($1, $2, $3, 0, $4, $5)",
                cmd.tip_id, cmd.room_id, cmd.user_id, message, datetime.fromtimestamp(now, UTC),
            )  # fmt: skip
            emits.append(emit("newMessage", room_channel(cmd.room_id), message))
            stored_message_id = cmd.tip_id
        result = Outcome(True, "applied", emits)
        await inbox.finish(
            conn, cmd.command_id, "applied",
            result.stored_result(message_id=stored_message_id, tip=_terms(cmd)),
        )  # fmt: skip
        return result


def _terms(cmd: SendTipCommand) -> dict[str, Any]:
    return {"to": cmd.to_user_id, "credits": cmd.credits, "room": cmd.room_id}


def _replay_or_conflict(cmd: SendTipCommand, stored: inbox.Stored) -> Outcome:
    """A repeat of the same tip re-publishes its outcome; a reused clientTipId with other terms is refused."""
    terms = stored.result.get("tip")
    if terms is not None and terms != _terms(cmd):
        notice = TipFailed(
            code="duplicate_tip_id",
            message=f"clientTipId {cmd.client_tip_id!r} was already used for a different tip; nothing moved",
            tipId=cmd.tip_id, clientTipId=cmd.client_tip_id,
        )  # fmt: skip
        return Outcome(False, "rejected", [emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))])
    return replay(stored)


async def _credit_error(
    conn: asyncpg.Connection,
    cmd: SendTipCommand,
    code: str,
    message: str,
    credits: int,
    recharge_url: str,
    owed: int | None = None,
) -> Outcome:
    """``creditError`` to the sender; nothing moved (beyond settling what the sender owed)."""
    error = TipCreditError(
        code=code, message=message, tipId=cmd.tip_id, clientTipId=cmd.client_tip_id, toUserId=cmd.to_user_id,
        roomId=cmd.room_id, required=cmd.credits, credits=credits, owed=owed, rechargeUrl=recharge_url,
    )  # fmt: skip
    emits = [emit("creditError", user_channel(cmd.user_id), error.model_dump(mode="json"))]
    await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits, "tip": _terms(cmd)})
    return Outcome(True, "rejected", emits)


async def _reject(conn: asyncpg.Connection, cmd: SendTipCommand, code: str, message: str) -> Outcome:
    notice = TipFailed(code=code, message=message, tipId=cmd.tip_id, clientTipId=cmd.client_tip_id)
    emits = [emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))]
    await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits, "tip": _terms(cmd)})
    return Outcome(True, "rejected", emits)


def _applied_emits(cmd: SendTipCommand, sender_after: int, recipient_after: int) -> list[Emit]:
    received = TipReceived(
        tipId=cmd.tip_id, fromUserId=cmd.user_id, fromUsername=sanitize_text(cmd.username), credits=cmd.credits,
        roomId=cmd.room_id, timestamp=cmd.accepted_at_ms, balance=recipient_after,
    )  # fmt: skip
    sent = TipSent(
        tipId=cmd.tip_id, clientTipId=cmd.client_tip_id, toUserId=cmd.to_user_id, credits=cmd.credits,
        roomId=cmd.room_id, timestamp=cmd.accepted_at_ms, balance=sender_after,
    )  # fmt: skip
    return [
        emit("tipReceived", user_channel(cmd.to_user_id), received.model_dump(mode="json")),
        emit("tipSent", user_channel(cmd.user_id), sent.model_dump(mode="json")),
    ]


def _tip_message(cmd: SendTipCommand) -> dict[str, Any]:
    username = sanitize_text(cmd.username)
    unit = "credit" if cmd.credits == 1 else "credits"
    text = sanitize_text(f"{cmd.username} tipped {cmd.to_user_id} {cmd.credits} {unit}")
    return TipMessage(
        messageId=cmd.tip_id,
        id=cmd.tip_id,
        roomId=cmd.room_id or "",
        userId=cmd.user_id,
        username=username,
        message=text,
        content=text,
        words=0,
        timestamp=cmd.accepted_at_ms,
        clientMessageId=cmd.client_tip_id,
        tip=TipInfo(toUserId=cmd.to_user_id, credits=cmd.credits),
    ).model_dump(mode="json")
