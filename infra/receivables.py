"""Receivables: credits a refund could not take back because the user had already spent them.

A user with an open receivable may not spend. Whenever such a user next has credits, a spending
path (or a new purchase) settles the receivable first, oldest first, as a ledger transfer to
``system:purchases``. Every spending path calls :func:`settle` while it holds the account's row
lock (``ledger.lock_balance`` / ``lock_or_open``) and refuses to spend while anything is owed::

    balance = await ledger.lock_or_open(conn, account)
    balance, owed = await receivables.settle(conn, account, balance)
    if owed:
        ...  # creditError: nothing is charged, nothing is delivered
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import asyncpg

from domain.credits import Balance
from infra import ledger

PURCHASES: Final = "system:purchases"
SETTLEMENT_KIND: Final = "receivable"


async def outstanding(conn: asyncpg.Connection | asyncpg.Pool, account: str) -> int:
    """Credits ``account`` still owes (no lock; for a quick check before expensive work)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(amount - settled), 0) FROM receivables WHERE account_id = $1 AND settled < amount",
            account,
        )
    )


async def settle(conn: asyncpg.Connection, account: str, balance: Balance) -> tuple[Balance, int]:
    """Pay open receivables from the balance; return the new balance and what is still owed.

    The caller holds the account's row lock, so two settlements of one account never overlap,
    and each transfer's reference (``<receivable>:<settled after it>``) is new exactly once.
    """
    rows = await conn.fetch(
        "SELECT receivable_id, amount, settled FROM receivables WHERE account_id = $1 AND settled < amount"
        " ORDER BY receivable_id FOR UPDATE",
        account,
    )
    if not rows:
        return balance, 0
    credits = balance.credits
    owed = 0
    for row in rows:
        due = row["amount"] - row["settled"]
        pay = min(due, credits)
        if pay > 0:
            settled = row["settled"] + pay
            await ledger.transfer(
                conn, account, PURCHASES, pay, SETTLEMENT_KIND, f"{row['receivable_id']}:{settled}",
                "refund shortfall settled",
            )  # fmt: skip
            await conn.execute(
                "UPDATE receivables SET settled = $2, settled_at = CASE WHEN $2 = amount THEN now() END"
                " WHERE receivable_id = $1",
                row["receivable_id"],
                settled,
            )
            credits -= pay
        owed += due - pay
    return replace(balance, credits=credits), owed


def debt_message(owed: int) -> str:
    return (
        f"Spending is blocked: a refunded purchase left {owed} credit(s) owed. "
        "Top up to settle it; the owed credits are taken first."
    )
