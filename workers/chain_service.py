"""Apply BEZ deposits: one transaction holds the inbox row, the deposit record, the carried
fraction and the ledger credit, so a redelivered, republished or replayed deposit changes nothing.
"""

from __future__ import annotations

import asyncpg

from domain.chain import format_units, split_deposit
from infra import deposits, inbox, ledger
from infra.db import Conn
from schemas.chain import ChainDeposit, deposit_reference
from schemas.chain import WalletDeposit as WalletDepositEvent
from schemas.channels import user_channel
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.unit_of_work import command_tx

CHAIN: str = "system:chain"  # the other side of every deposit (created by migration 0005)


async def apply_deposit(pool: asyncpg.Pool, cmd: ChainDeposit, signup_credits: int = 0) -> Outcome:
    """Record the deposit once; credit its sender's user if the address is linked, else keep it unclaimed."""
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, None)) as tx:
        if tx.replayed:
            return tx.replayed
        deposit = await deposits.record(tx.conn, cmd)
        if deposit.status == "credited":
            return tx.apply(deposit="already credited")
        if deposit.linked_to is None:
            return tx.apply(deposit="unclaimed")
        emits = await _credit(tx.conn, cmd, deposit, deposit.linked_to, signup_credits)
        return tx.apply(emits, deposit="credited")


async def _credit(
    conn: Conn, cmd: ChainDeposit, deposit: deposits.Recorded, user_id: str, signup_credits: int
) -> list[Emit]:
    account = ledger.user_account(user_id)
    await ledger.lock_or_open(conn, account, signup_credits)  # a first movement opens the account, as chat does
    carry = await deposits.lock_fraction(conn, user_id)
    split = split_deposit(carry, deposit.amount, deposit.decimals)
    await deposits.store_fraction(conn, user_id, split.carry)
    reference = deposit_reference(cmd.tx_hash, cmd.log_index)
    if split.credits:
        memo = f"{format_units(deposit.amount, deposit.decimals)} BEZ from {cmd.from_address}"
        await ledger.transfer(conn, CHAIN, account, split.credits, "deposit", reference, memo)
    await deposits.mark_credited(conn, cmd.tx_hash, cmd.log_index, user_id, split.credits)
    balance = await ledger.lock_balance(conn, account)  # locked since lock_or_open: the balance after the credit
    event = WalletDepositEvent(
        txHash=cmd.tx_hash,
        logIndex=cmd.log_index,
        fromAddress=cmd.from_address,
        amount=format_units(deposit.amount, deposit.decimals),
        credits=split.credits,
        balance=balance.credits,
    )
    return [emit("walletDeposit", user_channel(user_id), event.model_dump(mode="json"))]
