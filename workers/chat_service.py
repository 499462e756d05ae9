"""Apply chat commands: one transaction holds the inbox row, the charge and the stored message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

import asyncpg

from domain.agent import mentions
from domain.credits import Balance, Blocked, Charged, CreditPolicy
from domain.plans import Plan, PlanCatalog, quota_day
from domain.sanitize import sanitize_text
from domain.spending import Debt, InDebt, OverQuota, Quota, Settlement, Words, debt_message, decide_spend
from domain.words import count_words
from infra import inbox, ledger, messages, plan_usage, receivables
from infra.db import Conn
from schemas.channels import room_channel, user_channel
from schemas.commands import AgentReply, MarkMessageRead, SendChatMessage, agent_reply_ids
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE
from schemas.socket_events import CreditError, CreditInfo, CreditWarning, MessageRead, NewMessage
from workers import quotas
from workers.effects import Outcome, follow_up
from workers.emits import emit
from workers.unit_of_work import CommandTx, command_tx


@dataclass(frozen=True, slots=True)
class ChatTerms:
    """What applying a chat message depends on besides the message: the process's settings."""

    policy: CreditPolicy
    signup_credits: int
    recharge_url: str
    agent_handle: str | None = None
    plans: PlanCatalog | None = None


def send_key(cmd: SendChatMessage) -> inbox.Key:
    return inbox.Key(cmd.command_id, cmd.type, cmd.user_id)


async def send_message(
    pool: asyncpg.Pool,
    cmd: SendChatMessage,
    policy: CreditPolicy,
    signup_credits: int,
    recharge_url: str,
    agent_handle: str | None = None,
    plans: PlanCatalog | None = None,
) -> Outcome:
    terms = ChatTerms(policy, signup_credits, recharge_url, agent_handle, plans)
    async with command_tx(pool, send_key(cmd)) as tx:
        if tx.replayed:
            return tx.replayed
        await apply_sends(tx.conn, [(cmd, tx)], terms)
        return tx.outcome


async def apply_sends(conn: Conn, claimed: Sequence[tuple[SendChatMessage, CommandTx]], terms: ChatTerms) -> None:
    """Charge and store every claimed chat message, in order, with a fixed number of statements.

    One message alone, or a whole batch: the senders' accounts are locked in one statement (in
    account order), their debts and quotas read in one statement each; then each message is
    decided in turn by the spending policy, on the balances as the earlier messages of the batch
    left them (so one user's messages spend in the order they were sent); and every write (ledger
    transfers, balances, daily usage, messages) is one statement for all of them. Each command's
    outcome goes to its ``tx``.
    """
    if not claimed:
        return
    book = _Book(terms)
    accounts = {ledger.user_account(cmd.user_id) for cmd, _ in claimed}
    book.balances = await ledger.lock_balances(conn, accounts, terms.signup_credits)
    book.debts = await receivables.open_debts_of(conn, accounts)
    if terms.plans is not None:
        plans = await plan_usage.plans_of(conn, terms.plans, {cmd.user_id for cmd, _ in claimed})
        limited = {(cmd.user_id, _day(cmd)) for cmd, _ in claimed if plans[cmd.user_id].daily_messages is not None}
        book.plans, book.used = plans, await plan_usage.messages_used_on(conn, limited)
    for cmd, tx in claimed:
        book.decide(cmd, tx)
    await book.write(conn)


def _day(cmd: SendChatMessage) -> date:
    return quota_day(cmd.accepted_at_ms / 1000)


class _Book:
    """The balances, debts and quota usage of a batch's senders as its messages are decided in
    turn, and the writes those decisions add up to."""

    def __init__(self, terms: ChatTerms) -> None:
        self.terms = terms
        self.balances: dict[str, Balance] = {}
        self.debts: dict[str, list[Debt]] = {}
        self.plans: dict[str, Plan] = {}
        self.used: dict[tuple[str, date], int] = {}
        self.settlements: list[tuple[str, Settlement]] = []
        self.transfers: list[ledger.Transfer] = []
        self.usage: dict[str, tuple[int, int]] = {}  # account -> (words used, credits charged)
        self.counts: dict[tuple[str, date], int] = {}
        self.rows: list[messages.NewRow] = []

    def _quota(self, cmd: SendChatMessage) -> Quota | None:
        plan = self.plans.get(cmd.user_id)
        if plan is None or plan.daily_messages is None:
            return None
        day = _day(cmd)
        return Quota("messages", plan.name, plan.daily_messages, self.used[(cmd.user_id, day)], day)

    def decide(self, cmd: SendChatMessage, tx: CommandTx) -> Outcome:
        terms = self.terms
        now, words = cmd.accepted_at_ms / 1000, count_words(cmd.message)
        account = ledger.user_account(cmd.user_id)
        debts = self.debts.get(account, [])
        spend = decide_spend(
            self.balances[account], debts, Words(words), now=now, policy=terms.policy, quota=self._quota(cmd)
        )
        self.balances[account] = spend.balance
        if spend.settlements:
            self.settlements += [(account, s) for s in spend.settlements]
            paid = {s.receivable_id: s.settled_after for s in spend.settlements}
            self.debts[account] = [replace(d, settled=paid.get(d.receivable_id, d.settled)) for d in debts]
        user = user_channel(cmd.user_id)
        match spend.verdict:
            case InDebt(owed):
                error = _debt_error(cmd, spend.balance.credits, spend.balance.words_left, owed, terms.recharge_url)
                return tx.reject([emit("creditError", user, error)], words=words, owed=owed)
            case OverQuota(quota):
                event = quotas.quota_exceeded(quota, cmd.message_id, cmd.client_message_id, cmd.room_id)
                return tx.reject([emit("quotaExceeded", user, event)], words=words)
            case Blocked() as blocked:
                error = _credit_error(cmd, blocked, terms.recharge_url)
                return tx.reject([emit("creditError", user, error)], words=words)
        charged = spend.verdict
        assert isinstance(charged, Charged)
        if charged.credits_charged:
            memo = f"{words} words in {cmd.room_id}"
            self.transfers.append(
                ledger.Transfer(account, ledger.REVENUE, charged.credits_charged, "charge", cmd.command_id, memo)
            )
        used_words, used_credits = self.usage.get(account, (0, 0))
        self.usage[account] = (used_words + words, used_credits + charged.credits_charged)
        day = _day(cmd)
        self.counts[(cmd.user_id, day)] = self.counts.get((cmd.user_id, day), 0) + 1
        if (cmd.user_id, day) in self.used:
            self.used[(cmd.user_id, day)] += 1
        message = _new_message(cmd, words, charged)
        self.rows.append(messages.NewRow(cmd.message_id, cmd.room_id, cmd.user_id, words, message, cmd.accepted_at_ms))
        emits = [emit("newMessage", room_channel(cmd.room_id), message)]
        if charged.warn_low_balance:
            emits.append(emit("creditWarning", user, _credit_warning(charged, terms.policy)))
        follow_ups = []
        if terms.agent_handle and mentions(cmd.message, terms.agent_handle):
            ai_command_id, reply_id = agent_reply_ids(cmd.message_id)
            ask = AgentReply(
                command_id=ai_command_id,
                reply_id=reply_id,
                trigger_message_id=cmd.message_id,
                room_id=cmd.room_id,
                asker=account,
                asker_user_id=cmd.user_id,
                requested_at_ms=cmd.accepted_at_ms,
            )
            follow_ups.append(follow_up(AI_QUEUE, AGENT_REPLY_ACTOR, ask))
        stored = {"message_id": cmd.message_id, "words": words, "charged": charged.credits_charged}
        return tx.apply(emits, follow_ups, **stored, free=charged.free_words)

    async def write(self, conn: Conn) -> None:
        for account in sorted({a for a, _ in self.settlements}):  # rare: only users a refund left in debt
            await receivables.store_settlements(conn, account, [s for a, s in self.settlements if a == account])
        await ledger.transfer_many(conn, self.transfers)
        updates = [ledger.BalanceUpdate(a, self.balances[a], w, c) for a, (w, c) in sorted(self.usage.items())]
        await ledger.store_balances(conn, updates)
        await plan_usage.count_messages(conn, self.counts)
        await messages.store_many(conn, self.rows)


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
        message=debt_message(owed),
        clientMessageId=cmd.client_message_id,
        messageId=cmd.message_id,
        roomId=cmd.room_id,
        required=owed,
        credits=credits,
        wordsLeft=words_left,
        rechargeUrl=recharge_url,
    ).model_dump(mode="json")


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
            error = {
                "code": "bad_request",
                "message": f"unknown message {cmd.message_id} in {cmd.room_id}",
                "event": "mark-read",
                "roomId": cmd.room_id,
                "messageId": cmd.message_id,
            }
            return tx.reject([emit("error", user_channel(cmd.user_id), error)])
        read = MessageRead(roomId=cmd.room_id, messageId=cmd.message_id, userId=cmd.user_id)
        return tx.apply([emit("messageRead", room_channel(cmd.room_id), read.model_dump(mode="json"))])
