"""The double-entry credit ledger in PostgreSQL.

Every movement is one ``ledger_transactions`` row, unique on (kind, reference),
with postings that sum to zero. User balances are kept on ``accounts`` in the
same transaction; system balances are derived from postings, so no hot row
serializes every charge in the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import asyncpg

from domain.credits import Balance

REVENUE: Final = "system:revenue"
GRANTS: Final = "system:grants"


class UnknownAccount(LookupError):
    pass


def user_account(user_id: str) -> str:
    return f"user:{user_id}"


def tenant_account(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def _kind(account: str) -> str:
    return account.split(":", 1)[0]


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True)
class AccountStats:
    account: str
    balance: Balance
    words_used_total: int
    credits_charged_total: int


async def ensure_account(conn: asyncpg.Connection, account: str, signup_credits: int = 0) -> bool:
    """Open a user or tenant account on first sight, with its sign-up grant; True if it was new."""
    created = await conn.fetchval(
        "INSERT INTO accounts (account_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        account,
        _kind(account),
    )
    if created and signup_credits > 0:
        await transfer(conn, GRANTS, account, signup_credits, "signup", account)
    return bool(created)


async def lock_balance(conn: asyncpg.Connection, account: str) -> Balance:
    """Read an account's balance and hold its row lock until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT credits, words_left, words_expire_at, low_balance_warned"
        " FROM accounts WHERE account_id = $1 FOR UPDATE",
        account,
    )
    if row is None:
        raise UnknownAccount(account)
    expire = row["words_expire_at"]
    return Balance(
        credits=row["credits"],
        words_left=row["words_left"],
        words_expire_at=expire.timestamp() if expire else None,
        low_balance_warned=row["low_balance_warned"],
    )


async def lock_or_open(conn: asyncpg.Connection, account: str, signup_credits: int = 0) -> Balance:
    """Lock an account's balance, opening the account first if this is its first movement."""
    try:
        return await lock_balance(conn, account)
    except UnknownAccount:
        await ensure_account(conn, account, signup_credits)
        return await lock_balance(conn, account)


async def store_balance(
    conn: asyncpg.Connection,
    account: str,
    balance: Balance,
    *,
    words_used: int = 0,
    credits_charged: int = 0,
) -> None:
    """Write the non-monetary part of a balance and the usage counters.

    ``credits`` itself only ever changes through :func:`transfer`.
    """
    await conn.execute(
        "UPDATE accounts SET words_left = $2, words_expire_at = $3, low_balance_warned = $4,"
        " words_used_total = words_used_total + $5, credits_charged_total = credits_charged_total + $6,"
        " updated_at = now() WHERE account_id = $1",
        account,
        balance.words_left,
        _ts(balance.words_expire_at),
        balance.low_balance_warned,
        words_used,
        credits_charged,
    )


async def transfer(
    conn: asyncpg.Connection,
    source: str,
    destination: str,
    amount: int,
    kind: str,
    reference: str,
    memo: str | None = None,
) -> bool:
    """Move ``amount`` credits once per (kind, reference); False if it already happened.

    Must run inside a transaction. A user balance that would go negative fails
    the CHECK constraint and aborts the whole transaction.
    """
    if amount <= 0:
        raise ValueError("a transfer moves a positive amount")
    txn_id = await conn.fetchval(
        "INSERT INTO ledger_transactions (kind, reference, memo) VALUES ($1, $2, $3)"
        " ON CONFLICT (kind, reference) DO NOTHING RETURNING txn_id",
        kind,
        reference,
        memo,
    )
    if txn_id is None:
        return False
    await conn.executemany(
        "INSERT INTO ledger_postings (txn_id, account_id, amount) VALUES ($1, $2, $3)",
        [(txn_id, source, -amount), (txn_id, destination, amount)],
    )
    await conn.execute(
        "UPDATE accounts SET credits = credits + CASE WHEN account_id = $1 THEN -$3::bigint ELSE $3::bigint END,"
        " updated_at = now() WHERE account_id IN ($1, $2) AND kind <> 'system'",
        source,
        destination,
        amount,
    )
    return True


async def account_stats(conn: asyncpg.Connection, account: str) -> AccountStats | None:
    row = await conn.fetchrow(
        "SELECT credits, words_left, words_expire_at, low_balance_warned, words_used_total,"
        " credits_charged_total FROM accounts WHERE account_id = $1",
        account,
    )
    if row is None:
        return None
    expire = row["words_expire_at"]
    balance = Balance(
        row["credits"], row["words_left"], expire.timestamp() if expire else None, row["low_balance_warned"]
    )
    return AccountStats(account, balance, row["words_used_total"], row["credits_charged_total"])


async def credits_of(conn: asyncpg.Connection | asyncpg.Pool, account: str) -> int | None:
    """The account's whole credits now (no lock); None if it has no account yet."""
    return await conn.fetchval("SELECT credits FROM accounts WHERE account_id = $1", account)


async def store_low_balance_warned(conn: asyncpg.Connection, account: str, warned: bool) -> None:
    """Store whether the account was warned of a low balance (credits received re-arm the warning)."""
    await conn.execute("UPDATE accounts SET low_balance_warned = $2 WHERE account_id = $1", account, warned)


async def account_exists(conn: asyncpg.Connection | asyncpg.Pool, account: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", account))
