"""Paying for words: the one way a chat message, the agent's reply and a channel message charge
their payer, under the spending policy (:func:`domain.spending.decide_spend`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from domain.credits import Charged, CreditPolicy
from domain.spending import Quota, Spend, Words, decide_spend
from infra import ledger, receivables
from infra.db import Conn


async def spend_words(
    conn: Conn,
    account: str,
    words: int,
    *,
    now: float,
    policy: CreditPolicy,
    reference: str,
    memo: str | None = None,
    signup_credits: int = 0,
    quota: Callable[[], Awaitable[Quota | None]] | None = None,
) -> Spend:
    """Lock ``account``, settle its debts, and charge it for ``words`` if the policy allows.

    ``quota`` reads the payer's plan quota once the account is locked, so that two spends of one
    account cannot both take its last unit. What the decision says is stored (settlements, and
    for a charge its ledger transfer, under ``reference``, and the new balance); the caller tells
    the payer.
    """
    balance = await ledger.lock_or_open(conn, account, signup_credits)
    debts = await receivables.open_debts(conn, account)
    spend = decide_spend(balance, debts, Words(words), now=now, policy=policy, quota=await quota() if quota else None)
    await receivables.store_settlements(conn, account, spend.settlements)
    if isinstance(charged := spend.verdict, Charged):
        if charged.credits_charged:
            await ledger.transfer(conn, account, ledger.REVENUE, charged.credits_charged, "charge", reference, memo)
        await ledger.store_balance(
            conn, account, charged.balance, words_used=words, credits_charged=charged.credits_charged
        )
    return spend
