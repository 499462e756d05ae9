"""The double-entry credit ledger in PostgreSQL.

Every movement is one ``ledger_transactions`` row, unique on (kind, reference),
with postings that sum to zero. User balances are kept on ``accounts`` in the
same transaction; system balances are derived from postings, so no hot row
serializes every charge in the system.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import asyncpg

from domain.credits import Balance
from infra.db import Conn, ConnOrPool

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


async def ensure_account(conn: Conn, account: str, signup_credits: int = 0) -> bool:
    """Open a user or tenant account on first sight, with its sign-up grant; True if it was new."""
    created = await conn.fetchval(
        "INSERT INTO accounts (account_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        account,
        _kind(account),
    )
    if created and signup_credits > 0:
        await transfer(conn, GRANTS, account, signup_credits, "signup", account)
    return bool(created)


async def lock_balance(conn: Conn, account: str) -> Balance:
    """Read an account's balance and hold its row lock until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT credits, words_left, words_expire_at, low_balance_warned"
        " FROM accounts WHERE account_id = $1 FOR UPDATE",
        account,
    )
    if row is None:
        raise UnknownAccount(account)
    return _balance(row)


async def lock_or_open(conn: Conn, account: str, signup_credits: int = 0) -> Balance:
    """Lock an account's balance, opening the account first if this is its first movement."""
    try:
        return await lock_balance(conn, account)
    except UnknownAccount:
        await ensure_account(conn, account, signup_credits)
        return await lock_balance(conn, account)


async def store_balance(
    conn: Conn,
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
    conn: Conn,
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


async def account_stats(conn: Conn, account: str) -> AccountStats | None:
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


async def credits_of(conn: ConnOrPool, account: str) -> int | None:
    """The account's whole credits now (no lock); None if it has no account yet."""
    return await conn.fetchval("SELECT credits FROM accounts WHERE account_id = $1", account)


async def store_low_balance_warned(conn: Conn, account: str, warned: bool) -> None:
    """Store whether the account was warned of a low balance (credits received re-arm the warning)."""
    await conn.execute("UPDATE accounts SET low_balance_warned = $2 WHERE account_id = $1", account, warned)


async def account_exists(conn: ConnOrPool, account: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", account))


def _balance(row: asyncpg.Record) -> Balance:
    expire = row["words_expire_at"]
    return Balance(
        credits=row["credits"],
        words_left=row["words_left"],
        words_expire_at=expire.timestamp() if expire else None,
        low_balance_warned=row["low_balance_warned"],
    )


async def lock_balances(conn: Conn, accounts: Iterable[str], signup_credits: int = 0) -> dict[str, Balance]:
    """Lock many accounts in one fixed order (account id) and read their balances, opening those
    seen for the first time.

    A batch that touches several accounts takes all its locks up front, in this order, so two
    batches never wait on each other in a circle.
    """
    wanted = sorted(set(accounts))
    query = (
        "SELECT account_id, credits, words_left, words_expire_at, low_balance_warned FROM accounts"
        " WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE"
    )
    balances = {r["account_id"]: _balance(r) for r in await conn.fetch(query, wanted)}
    if missing := [a for a in wanted if a not in balances]:
        for account in missing:
            await ensure_account(conn, account, signup_credits)
        balances.update({r["account_id"]: _balance(r) for r in await conn.fetch(query, missing)})
    return balances


@dataclass(frozen=True, slots=True)
class Transfer:
    source: str
    destination: str
    amount: int
    kind: str
    reference: str
    memo: str | None = None


async def transfer_many(conn: Conn, transfers: Sequence[Transfer]) -> int:
    """:func:`transfer` for many movements in three statements; returns how many were new.

    Each still happens once per (kind, reference); user balances change by the net of the new ones.
    """
    if not transfers:
        return 0
    if any(t.amount <= 0 for t in transfers):
        raise ValueError("a transfer moves a positive amount")
    rows = await conn.fetch(
        "INSERT INTO ledger_transactions (kind, reference, memo)"
        " SELECT k, r, m FROM unnest($1::text[], $2::text[], $3::text[]) AS t(k, r, m)"
        " ON CONFLICT (kind, reference) DO NOTHING RETURNING txn_id, kind, reference",
        [t.kind for t in transfers],
        [t.reference for t in transfers],
        [t.memo for t in transfers],
    )
    new = {(r["kind"], r["reference"]): r["txn_id"] for r in rows}
    done = [(new[(t.kind, t.reference)], t) for t in transfers if (t.kind, t.reference) in new]
    if not done:
        return 0
    postings = [(txn, t.source, -t.amount) for txn, t in done] + [(txn, t.destination, t.amount) for txn, t in done]
    await conn.execute(
        "INSERT INTO ledger_postings (txn_id, account_id, amount)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])",
        [p[0] for p in postings],
        [p[1] for p in postings],
        [p[2] for p in postings],
    )
    net: dict[str, int] = {}
    for _, account, amount in postings:
        net[account] = net.get(account, 0) + amount
    await conn.execute(
        "UPDATE accounts SET credits = credits + d.delta, updated_at = now()"
        " FROM unnest($1::text[], $2::bigint[]) AS d(a, delta) WHERE account_id = d.a AND kind <> 'system'",
        list(net),
        list(net.values()),
    )
    return len(done)


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    account: str
    balance: Balance
    words_used: int
    credits_charged: int


async def store_balances(conn: Conn, updates: Sequence[BalanceUpdate]) -> None:
    """:func:`store_balance` for many accounts in one statement."""
    if not updates:
        return
    await conn.execute(
        "UPDATE accounts SET words_left = u.wl, words_expire_at = u.exp, low_balance_warned = u.warned,"
        " words_used_total = words_used_total + u.words, credits_charged_total = credits_charged_total + u.charged,"
        " updated_at = now()"
        " FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::bool[], $5::bigint[], $6::bigint[])"
        " AS u(a, wl, exp, warned, words, charged) WHERE account_id = u.a",
        [u.account for u in updates],
        [u.balance.words_left for u in updates],
        [_ts(u.balance.words_expire_at) for u in updates],
        [u.balance.low_balance_warned for u in updates],
        [u.words_used for u in updates],
        [u.credits_charged for u in updates],
    )
