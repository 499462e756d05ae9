"""BEZ deposits as the chain watcher sees them and the deposit worker credits them.

``chain_deposits`` holds one row per confirmed transfer to the treasury (``unclaimed`` until its
sender's address is linked to a user, then ``credited``); ``chain_fractions`` the base units a
user deposited that do not make a whole credit yet; ``chain_cursors`` the next block the watcher
reads, per (chain, token, treasury). The wallet page reads them through :mod:`infra.wallets`.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.db import Conn, ConnOrPool
from schemas.chain import ChainDeposit

CLAIM_BATCH = 500  # unclaimed deposits of linked senders read per sweep


@dataclass(frozen=True, slots=True)
class Recorded:
    """A deposit's row as the worker finds it, locked: its state and the user its sender is linked to."""

    status: str  # 'unclaimed' | 'credited'
    amount: int  # token base units
    decimals: int
    linked_to: str | None


@dataclass(frozen=True, slots=True)
class Unclaimed:
    """A deposit not credited yet whose sender has been linked since."""

    tx_hash: str
    log_index: int
    chain_key: str
    block_number: int
    from_address: str
    amount: int
    decimals: int


async def record(conn: Conn, cmd: ChainDeposit) -> Recorded:
    """Record the deposit once (``unclaimed``) and return its row, locked until the transaction
    ends: the lock orders a deposit command and a later claim of the same deposit."""
    await conn.execute(
        "INSERT INTO chain_deposits (tx_hash, log_index, chain_key, block_number, from_address, amount,"
        " decimals, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'unclaimed') ON CONFLICT DO NOTHING",
        cmd.tx_hash,
        cmd.log_index,
        cmd.chain_key,
        cmd.block_number,
        cmd.from_address,
        cmd.amount,
        cmd.decimals,
    )
    row = await conn.fetchrow(
        "SELECT d.status, d.amount, d.decimals, l.user_id AS linked_to FROM chain_deposits d"
        " LEFT JOIN wallet_links l ON l.address = d.from_address"
        " WHERE d.tx_hash = $1 AND d.log_index = $2 FOR UPDATE OF d",
        cmd.tx_hash,
        cmd.log_index,
    )
    assert row is not None  # inserted just above if it was not there
    return Recorded(row["status"], int(row["amount"]), row["decimals"], row["linked_to"])


async def mark_credited(conn: Conn, tx_hash: str, log_index: int, user_id: str, credits: int) -> None:
    await conn.execute(
        "UPDATE chain_deposits SET status = 'credited', user_id = $3, credits = $4, credited_at = now()"
        " WHERE tx_hash = $1 AND log_index = $2",
        tx_hash,
        log_index,
        user_id,
        credits,
    )


async def lock_fraction(conn: Conn, user_id: str) -> int:
    """The base units carried over from the user's earlier deposits; the row (made on first use)
    stays locked until the transaction ends."""
    return int(
        await conn.fetchval(
            "INSERT INTO chain_fractions (user_id) VALUES ($1) ON CONFLICT (user_id)"
            " DO UPDATE SET updated_at = now() RETURNING base_units",
            user_id,
        )
    )


async def store_fraction(conn: Conn, user_id: str, base_units: int) -> None:
    await conn.execute(
        "UPDATE chain_fractions SET base_units = $2, updated_at = now() WHERE user_id = $1", user_id, base_units
    )


async def unclaimed_of_linked(conn: ConnOrPool, limit: int = CLAIM_BATCH) -> list[Unclaimed]:
    """Unclaimed deposits whose sender is linked to a user now, oldest first."""
    rows = await conn.fetch(
        "SELECT d.tx_hash, d.log_index, d.chain_key, d.block_number, d.from_address, d.amount, d.decimals"
        " FROM chain_deposits d JOIN wallet_links l ON l.address = d.from_address"
        " WHERE d.status = 'unclaimed' ORDER BY d.block_number, d.log_index LIMIT $1",
        limit,
    )
    return [
        Unclaimed(
            tx_hash=r["tx_hash"],
            log_index=r["log_index"],
            chain_key=r["chain_key"],
            block_number=r["block_number"],
            from_address=r["from_address"],
            amount=int(r["amount"]),
            decimals=r["decimals"],
        )
        for r in rows
    ]


async def cursor(conn: ConnOrPool, chain_key: str, start_block: int) -> int:
    """The next block to read for ``chain_key``; a new one starts at ``start_block``."""
    return int(
        await conn.fetchval(
            "WITH new AS (INSERT INTO chain_cursors (chain_key, next_block) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING next_block)"
            " SELECT next_block FROM new UNION ALL SELECT next_block FROM chain_cursors WHERE chain_key = $1",
            chain_key,
            start_block,
        )
    )


async def advance_cursor(conn: ConnOrPool, chain_key: str, start: int, next_block: int) -> bool:
    """Move the cursor from ``start`` to ``next_block`` (compare-and-set); False if it was not at ``start``."""
    moved = await conn.fetchval(
        "UPDATE chain_cursors SET next_block = $3, updated_at = now()"
        " WHERE chain_key = $1 AND next_block = $2 RETURNING true",
        chain_key,
        start,
        next_block,
    )
    return bool(moved)
