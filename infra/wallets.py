"""Wallets: the challenges a user signs to link an address, the links, and what the wallet page reads.

An address (lowercase ``0x…``) belongs to one user; a user may link several. A challenge is a
single-use nonce with the message to sign; spent and expired ones are deleted when the user asks
for a new one. The deposits themselves are written by the chain watcher (``chain_deposits``,
``chain_fractions``); this module only reads them for the wallet page and the link answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from infra.db import Conn

RECENT_DEPOSITS = 20  # deposits the wallet page lists


@dataclass(frozen=True, slots=True)
class LiveChallenges:
    count: int
    retry_s: float | None  # whole seconds until the first of them expires; None when there is none


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: str
    message: str
    used: bool
    expired: bool


@dataclass(frozen=True, slots=True)
class Link:
    address: str
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class Deposit:
    tx_hash: str
    log_index: int
    block_number: int
    from_address: str
    amount: int  # token base units
    decimals: int
    status: str  # 'credited' or 'unclaimed'
    credits: int


async def live_challenges(conn: Conn, user_id: str) -> LiveChallenges:
    """The user's unexpired, unused challenges, after deleting the others. Call it in a transaction:
    it holds the user's challenge lock until the transaction ends, so one user's requests take turns."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"wallet-challenge:{user_id}")
    # Spent and expired challenges serve no one; keep the table as small as the live ones.
    await conn.execute(
        "DELETE FROM wallet_challenges WHERE user_id = $1 AND (used_at IS NOT NULL OR expires_at < now())",
        user_id,
    )
    row = await conn.fetchrow(
        "SELECT count(*), ceil(extract(epoch FROM min(expires_at) - now())) FROM wallet_challenges WHERE user_id = $1",
        user_id,
    )
    assert row is not None  # an aggregate returns one row
    count, retry_s = row
    return LiveChallenges(count, None if retry_s is None else float(retry_s))


async def store_challenge(conn: Conn, nonce: str, user_id: str, message: str, expires: datetime) -> None:
    await conn.execute(
        "INSERT INTO wallet_challenges (nonce, user_id, message, expires_at) VALUES ($1, $2, $3, $4)",
        nonce,
        user_id,
        message,
        expires,
    )


async def challenge_to_sign(conn: Conn, user_id: str, nonce: str | None) -> Challenge | None:
    """The user's challenge with that nonce (their newest one when ``nonce`` is None), locked until
    the transaction ends; None when there is none."""
    row = await conn.fetchrow(
        "SELECT nonce, message, used_at IS NOT NULL AS used, expires_at <= now() AS expired FROM wallet_challenges"
        " WHERE user_id = $1 AND ($2::text IS NULL OR nonce = $2) ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
        user_id,
        nonce,
    )
    return None if row is None else Challenge(row["nonce"], row["message"], row["used"], row["expired"])


async def use_challenge(conn: Conn, nonce: str) -> None:
    await conn.execute("UPDATE wallet_challenges SET used_at = now() WHERE nonce = $1", nonce)


async def link(conn: Conn, address: str, user_id: str) -> tuple[bool, str]:
    """Link the address to the user unless it is linked already: (created, the address's owner)."""
    created = await conn.fetchval(
        "INSERT INTO wallet_links (address, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        address,
        user_id,
    )
    if created:
        return True, user_id
    return False, await conn.fetchval("SELECT user_id FROM wallet_links WHERE address = $1", address)


async def unclaimed_deposits(conn: Conn, address: str) -> int:
    """How many deposits the address made that no user has been credited for yet."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM chain_deposits WHERE from_address = $1 AND status = 'unclaimed'", address
        )
    )


async def links(conn: Conn, user_id: str) -> list[Link]:
    """The user's addresses, oldest link first."""
    rows = await conn.fetch(
        "SELECT address, linked_at FROM wallet_links WHERE user_id = $1 ORDER BY linked_at, address", user_id
    )
    return [Link(r["address"], r["linked_at"]) for r in rows]


async def pending_fraction(conn: Conn, user_id: str) -> int:
    """Base units the user deposited that do not make one whole credit yet (0 when none)."""
    return int(await conn.fetchval("SELECT base_units FROM chain_fractions WHERE user_id = $1", user_id) or 0)


async def recent_deposits(
    conn: Conn, user_id: str, addresses: Sequence[str], limit: int = RECENT_DEPOSITS
) -> list[Deposit]:
    """The newest deposits credited to the user, or still unclaimed from one of ``addresses``."""
    rows = await conn.fetch(
        "SELECT tx_hash, log_index, block_number, from_address, amount, decimals, status, credits"
        " FROM chain_deposits WHERE user_id = $1 OR (status = 'unclaimed' AND from_address = ANY($2::text[]))"
        " ORDER BY block_number DESC, log_index DESC LIMIT $3",
        user_id,
        list(addresses),
        limit,
    )
    return [
        Deposit(
            tx_hash=r["tx_hash"],
            log_index=r["log_index"],
            block_number=r["block_number"],
            from_address=r["from_address"],
            amount=int(r["amount"]),
            decimals=r["decimals"],
            status=r["status"],
            credits=r["credits"],
        )
        for r in rows
    ]
