"""Apply BEZ deposits: one transaction holds the inbox row, the deposit record, the carried
fraction and the ledger credit, so a redelivered, republished or replayed deposit changes nothing.
"""

from __future__ import annotations

import asyncpg

from domain.chain import format_units, split_deposit
from infra import inbox, ledger
from schemas.chain import ChainDeposit, deposit_reference
from schemas.chain import WalletDeposit as WalletDepositEvent
from schemas.channels import user_channel
from workers.effects import Outcome, replay
from workers.emits import Emit, emit

CHAIN: str = "system:chain"  # the other side of every deposit (created by migration 0005)


async def apply_deposit(pool: asyncpg.Pool, cmd: ChainDeposit, signup_credits: int = 0) -> Outcome:
    """Record the deposit once; credit its sender's user if the address is linked, else keep it unclaimed."""
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, None)) is not None:
            return replay(stored)
        await conn.execute(
            "INSERT INTO chain_deposits (tx_hash, log_index, chain_key, block_number, from_address, amount,"
            " decimals, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'unclaimed') ON CONFLICT DO NOTHING",
            cmd.tx_hash, cmd.log_index, cmd.chain_key, cmd.block_number, cmd.from_address, cmd.amount, cmd.decimals,
        )  # fmt: skip
        # The row lock orders a deposit command and a later claim of the same deposit.
        row = await conn.fetchrow(
            "SELECT d.status, d.amount, d.decimals, l.user_id AS linked_to FROM chain_deposits d"
            " LEFT JOIN wallet_links l ON l.address = d.from_address"
            " WHERE d.tx_hash = $1 AND d.log_index = $2 FOR UPDATE OF d",
            cmd.tx_hash, cmd.log_index,
        )  # fmt: skip
        emits: list[Emit] = []
        if row["status"] == "credited":
            status, detail = "applied", "already credited"
        elif row["linked_to"] is None:
            status, detail = "applied", "unclaimed"
        else:
            emits = await _credit(conn, cmd, row["linked_to"], int(row["amount"]), row["decimals"], signup_credits)
            status, detail = "applied", "credited"
        result = Outcome(True, status, emits)
        await inbox.finish(conn, cmd.command_id, status, result.stored_result(deposit=detail))
        return result


async def _credit(
    conn: asyncpg.Connection, cmd: ChainDeposit, user_id: str, amount: int, decimals: int, signup_credits: int
) -> list[Emit]:
    account = ledger.user_account(user_id)
    await ledger.lock_or_open(conn, account, signup_credits)  # a first movement opens the account, as chat does
    carry = await conn.fetchval(
        "INSERT INTO chain_fractions (user_id) VALUES ($1) ON CONFLICT (user_id)"
        " DO UPDATE SET updated_at = now() RETURNING base_units",
        user_id,
    )  # the upsert locks the user's fraction row until commit
    split = split_deposit(int(carry), amount, decimals)
    await conn.execute(
        "UPDATE chain_fractions SET base_units = $2, updated_at = now() WHERE user_id = $1", user_id, split.carry
    )
    reference = deposit_reference(cmd.tx_hash, cmd.log_index)
    if split.credits:
        memo = f"{format_units(amount, decimals)} BEZ from {cmd.from_address}"
        await ledger.transfer(conn, CHAIN, account, split.credits, "deposit", reference, memo)
    await conn.execute(
        "UPDATE chain_deposits SET status = 'credited', user_id = $3, credits = $4, credited_at = now()"
        " WHERE tx_hash = $1 AND log_index = $2",
        cmd.tx_hash, cmd.log_index, user_id, split.credits,
    )  # fmt: skip
    balance = await conn.fetchval("SELECT credits FROM accounts WHERE account_id = $1", account)
    event = WalletDepositEvent(
        txHash=cmd.tx_hash, logIndex=cmd.log_index, fromAddress=cmd.from_address,
        amount=format_units(amount, decimals), credits=split.credits, balance=balance,
    )  # fmt: skip
    return [emit("walletDeposit", user_channel(user_id), event.model_dump(mode="json"))]
