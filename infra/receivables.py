"""Receivables: credits a refund could not take back because the user had already spent them.

The rule (pay them first, refuse spending while anything is owed) is :mod:`domain.spending`'s;
this module reads and writes the rows. Every spending path loads the open receivables while it
holds the account's row lock (``ledger.lock_or_open``), asks ``decide_spend``, and stores the
settlements it returns::

    balance = await ledger.lock_or_open(conn, account)
    spend = decide_spend(balance, await receivables.open_debts(conn, account), cost, ...)
    await receivables.store_settlements(conn, account, spend.settlements)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from domain.credits import Balance
from domain.spending import Debt, Settlement, settle_debts
from infra import ledger
from infra.db import Conn, ConnOrPool

PURCHASES: Final = "system:purchases"
SETTLEMENT_KIND: Final = "receivable"


async def outstanding(conn: ConnOrPool, account: str) -> int:
    """Credits ``account`` still owes (no lock; for a quick check before expensive work)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(amount - settled), 0) FROM receivables WHERE account_id = $1 AND settled < amount",
            account,
        )
    )


async def open_debts(conn: Conn, account: str) -> list[Debt]:
    """The account's open receivables, oldest first, locked until the transaction ends."""
    rows = await conn.fetch(
        "SELECT receivable_id, amount, settled FROM receivables WHERE account_id = $1 AND settled < amount"
        " ORDER BY receivable_id FOR UPDATE",
        account,
    )
    return [Debt(r["receivable_id"], r["amount"], r["settled"]) for r in rows]


async def open_shortfall(conn: Conn, account: str, purchase_ref: str, reversal: int, amount: int) -> None:
    """Open a receivable: ``amount`` credits of the reversal to ``reversal`` the balance could not cover."""
    await conn.execute(
        "INSERT INTO receivables (account_id, purchase_ref, reversal, amount) VALUES ($1, $2, $3, $4)",
        account,
        purchase_ref,
        reversal,
        amount,
    )


async def open_debts_of(conn: Conn, accounts: Iterable[str]) -> dict[str, list[Debt]]:
    """:func:`open_debts` of many accounts in one statement (accounts without any are left out)."""
    rows = await conn.fetch(
        "SELECT account_id, receivable_id, amount, settled FROM receivables"
        " WHERE account_id = ANY($1::text[]) AND settled < amount ORDER BY account_id, receivable_id FOR UPDATE",
        sorted(set(accounts)),
    )
    debts: dict[str, list[Debt]] = {}
    for r in rows:
        debts.setdefault(r["account_id"], []).append(Debt(r["receivable_id"], r["amount"], r["settled"]))
    return debts


async def store_settlements(conn: Conn, account: str, settlements: Sequence[Settlement]) -> None:
    """Pay each settlement as a ledger transfer to ``system:purchases``.

    The caller holds the account's row lock, so two settlements of one account never overlap,
    and each transfer's reference (``<receivable>:<settled after it>``) is new exactly once.
    """
    for s in settlements:
        await ledger.transfer(
            conn,
            account,
            PURCHASES,
            s.paid,
            SETTLEMENT_KIND,
            f"{s.receivable_id}:{s.settled_after}",
            "refund shortfall settled",
        )
        await conn.execute(
            "UPDATE receivables SET settled = $2, settled_at = CASE WHEN $2 = amount THEN now() END"
            " WHERE receivable_id = $1",
            s.receivable_id,
            s.settled_after,
        )


async def settle(conn: Conn, account: str, balance: Balance) -> tuple[Balance, int]:
    """Pay what the balance can of the open receivables (a purchase does, after its top-up);
    returns the new balance and what is still owed."""
    settlements, balance, owed = settle_debts(balance, await open_debts(conn, account))
    await store_settlements(conn, account, settlements)
    return balance, owed
