"""Admin credit movements: idempotent grants and the seed's balance reset."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from domain.credits import set_credits, top_up
from infra import ledger
from infra.db import Conn
from schemas.commands import scoped_id


@dataclass(frozen=True, slots=True)
class GrantResult:
    applied: bool
    credits: int
    words_left: int
    # A replayed idempotency key whose first grant moved another amount: nothing was applied,
    # and the caller should answer a conflict (409) rather than "already done".
    conflict: bool = False
    granted: int | None = None  # the amount the key's first grant moved


async def grant(
    pool: asyncpg.Pool, account: str, credits: int, reason: str, idempotency_key: str, signup_credits: int = 0
) -> GrantResult:
    """Add credits to a user or tenant account once per (account, idempotency key)."""
    async with pool.acquire() as conn, conn.transaction():
        balance = await ledger.lock_or_open(conn, account, signup_credits)  # grants to one account in turn
        granted = await _granted(conn, account, idempotency_key)
        if granted is not None:  # a replay: "done already", or a conflict if it asks for another amount
            return GrantResult(False, balance.credits, balance.words_left, conflict=granted != credits, granted=granted)
        applied = await ledger.transfer(
            conn, ledger.GRANTS, account, credits, "grant", grant_reference(account, idempotency_key), reason
        )
        if not applied:  # unreachable while the account row is locked; never grant twice regardless
            return GrantResult(False, balance.credits, balance.words_left, conflict=True)
        balance = top_up(balance, credits)
        await ledger.store_balance(conn, account, balance)
        return GrantResult(True, balance.credits, balance.words_left, granted=credits)


def grant_reference(account: str, idempotency_key: str) -> str:
    """The ledger reference of a grant: one per (account, key), unambiguous whatever ':' they hold."""
    return scoped_id("grant", account, idempotency_key)


async def _granted(conn: Conn, account: str, idempotency_key: str) -> int | None:
    """Credits the key's earlier grant moved to ``account``, or None. Grants made before references
    were digests used ``<account>:<key>``: matching the posting's account keeps those unambiguous."""
    return await conn.fetchval(
        "SELECT p.amount FROM ledger_transactions t JOIN ledger_postings p USING (txn_id)"
        " WHERE t.kind = 'grant' AND t.reference = ANY($1::text[]) AND p.account_id = $2 LIMIT 1",
        [grant_reference(account, idempotency_key), f"{account}:{idempotency_key}"],
        account,
    )


async def reset(pool: asyncpg.Pool, user_id: str, credits: int, reason: str, reference: str) -> GrantResult:
    """Set the balance to exactly ``credits`` through one adjusting ledger entry."""
    account = ledger.user_account(user_id)
    async with pool.acquire() as conn, conn.transaction():
        balance = await ledger.lock_or_open(conn, account)
        new_balance, delta = set_credits(balance, credits)
        if delta > 0:
            await ledger.transfer(conn, ledger.GRANTS, account, delta, "adjustment", reference, reason)
        elif delta < 0:
            await ledger.transfer(conn, account, ledger.GRANTS, -delta, "adjustment", reference, reason)
        await ledger.store_balance(conn, account, new_balance)
        return GrantResult(delta != 0, new_balance.credits, new_balance.words_left)
