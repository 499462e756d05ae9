"""Apply a tip: one transaction holds the inbox row, the transfer and the room's tip message.

The ledger reference is the command id ``tip:<sender>:<clientTipId>``, so a tip
moves credits once however often it is sent, redelivered or replayed.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.errors import DomainError
from domain.sanitize import sanitize_text
from domain.spending import Credits, CreditsPaid, InDebt, debt_message, decide_spend, receive_credits
from domain.tips import TipBlocked, check_tip
from infra import inbox, ledger, messages, receivables
from schemas.channels import room_channel, user_channel
from schemas.tips import (
    SendTipCommand,
    TipCreditCode,
    TipCreditError,
    TipFailed,
    TipInfo,
    TipMessage,
    TipReceived,
    TipSent,
)
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.unit_of_work import CommandTx, command_tx

TIP_KIND = "tip"


async def send_tip(
    pool: asyncpg.Pool,
    cmd: SendTipCommand,
    max_credits: int,
    signup_credits: int,
    recharge_url: str,
) -> Outcome:
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.user_id)) as tx:
        if tx.replayed:
            return _replay_or_conflict(cmd, tx.stored, tx.replayed)
        conn = tx.conn
        sender, recipient = ledger.user_account(cmd.user_id), ledger.user_account(cmd.to_user_id)
        try:
            check_tip(cmd.user_id, cmd.to_user_id, cmd.credits, max_credits)
        except DomainError as exc:
            return _reject(tx, cmd, exc.code, str(exc))
        if not await ledger.account_exists(conn, recipient):
            return _reject(tx, cmd, "unknown_user", f"toUserId: no user {cmd.to_user_id!r} to tip")
        # Lock both rows in one order, so tips crossing between two users cannot deadlock.
        balances = {}
        for account in sorted((sender, recipient)):
            balances[account] = await ledger.lock_or_open(conn, account, signup_credits)
        # An unpaid refund shortfall is settled from the sender's credits first, and blocks spending.
        spend = decide_spend(balances[sender], await receivables.open_debts(conn, sender), Credits(cmd.credits))
        await receivables.store_settlements(conn, sender, spend.settlements)
        match spend.verdict:
            case InDebt(owed):
                message = debt_message(owed)
                return _credit_error(tx, cmd, "spending_blocked", message, spend.balance.credits, recharge_url, owed)
            case TipBlocked(required, credits):
                message = f"Insufficient credits: the tip needs {required} credit(s); you have {credits}"
                return _credit_error(tx, cmd, "insufficient_credits", message, credits, recharge_url)
        assert isinstance(spend.verdict, CreditsPaid)
        memo = f"tip from {cmd.user_id} to {cmd.to_user_id}" + (f" in {cmd.room_id}" if cmd.room_id else "")
        await ledger.transfer(conn, sender, recipient, cmd.credits, TIP_KIND, cmd.command_id, memo)
        # A tip received is a top-up: it re-arms the recipient's low-balance warning.
        received = receive_credits(balances[recipient], cmd.credits)
        await ledger.store_low_balance_warned(conn, recipient, received.low_balance_warned)
        emits = _applied_emits(cmd, spend.balance.credits, received.credits)
        stored_message_id = None
        if cmd.room_id is not None:
            tip_message = _tip_message(cmd)
            await messages.store(conn, cmd.tip_id, cmd.room_id, cmd.user_id, 0, tip_message, cmd.accepted_at_ms)
            emits.append(emit("newMessage", room_channel(cmd.room_id), tip_message))
            stored_message_id = cmd.tip_id
        return tx.apply(emits, message_id=stored_message_id, tip=_terms(cmd))


def _terms(cmd: SendTipCommand) -> dict[str, Any]:
    return {"to": cmd.to_user_id, "credits": cmd.credits, "room": cmd.room_id}


def _replay_or_conflict(cmd: SendTipCommand, stored: inbox.Stored | None, replayed: Outcome) -> Outcome:
    """A repeat of the same tip re-publishes its outcome; a reused clientTipId with other terms is refused."""
    terms = stored.result.get("tip") if stored is not None else None
    if terms is not None and terms != _terms(cmd):
        notice = TipFailed(
            code="duplicate_tip_id",
            message=f"clientTipId {cmd.client_tip_id!r} was already used for a different tip; nothing moved",
            tipId=cmd.tip_id,
            clientTipId=cmd.client_tip_id,
        )
        return Outcome(False, "rejected", [emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))])
    return replayed


def _credit_error(
    tx: CommandTx,
    cmd: SendTipCommand,
    code: TipCreditCode,
    message: str,
    credits: int,
    recharge_url: str,
    owed: int | None = None,
) -> Outcome:
    """``creditError`` to the sender; nothing moved (beyond settling what the sender owed)."""
    error = TipCreditError(
        code=code,
        message=message,
        tipId=cmd.tip_id,
        clientTipId=cmd.client_tip_id,
        toUserId=cmd.to_user_id,
        roomId=cmd.room_id,
        required=cmd.credits,
        credits=credits,
        owed=owed,
        rechargeUrl=recharge_url,
    )
    return tx.reject([emit("creditError", user_channel(cmd.user_id), error.model_dump(mode="json"))], tip=_terms(cmd))


def _reject(tx: CommandTx, cmd: SendTipCommand, code: str, message: str) -> Outcome:
    notice = TipFailed(code=code, message=message, tipId=cmd.tip_id, clientTipId=cmd.client_tip_id)
    return tx.reject([emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))], tip=_terms(cmd))


def _applied_emits(cmd: SendTipCommand, sender_after: int, recipient_after: int) -> list[Emit]:
    received = TipReceived(
        tipId=cmd.tip_id,
        fromUserId=cmd.user_id,
        fromUsername=sanitize_text(cmd.username),
        credits=cmd.credits,
        roomId=cmd.room_id,
        timestamp=cmd.accepted_at_ms,
        balance=recipient_after,
    )
    sent = TipSent(
        tipId=cmd.tip_id,
        clientTipId=cmd.client_tip_id,
        toUserId=cmd.to_user_id,
        credits=cmd.credits,
        roomId=cmd.room_id,
        timestamp=cmd.accepted_at_ms,
        balance=sender_after,
    )
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
        roomId=cmd.room_id or "",
        userId=cmd.user_id,
        username=username,
        message=text,
        words=0,
        timestamp=cmd.accepted_at_ms,
        clientMessageId=cmd.client_tip_id,
        tip=TipInfo(toUserId=cmd.to_user_id, credits=cmd.credits),
    ).model_dump(mode="json")
