"""Admin credit movements: idempotent grants and the seed's balance reset."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from domain.credits import set_credits, top_up
from infra import ledger


@dataclass(frozen=True, slots=True)
class GrantResult:
    applied: bool
    credits: int
    words_left: int


async def grant(
    pool: asyncpg.Pool, account: str, credits: int, reason: str, idempotency_key: str, signup_credits: int = 0
) -> GrantResult:
    """Add credits to a user or tenant account once per (account, idempotency key)."""
    async with pool.acquire() as conn, conn.transaction():
        balance = await ledger.lock_or_open(conn, account, signup_credits)
        applied = await ledger.transfer(
            conn, ledger.GRANTS, account, credits, "grant",
            f"{account}:{idempotency_key}", reason,
        )  # fmt: skip
        if applied:
            balance = top_up(balance, credits)
            await ledger.store_balance(conn, account, balance)
        return GrantResult(applied, balance.credits, balance.words_left)


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
