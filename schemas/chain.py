"""The BEZ chain contract: the deposit command, the wallet HTTP bodies and the deposit event."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from schemas.base import Command, Outbound, Storable

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
TX_HASH_PATTERN = r"^0x[0-9a-f]{64}$"


def deposit_command_id(tx_hash: str, log_index: int) -> str:
    """The watcher's idempotency key: one per Transfer log, however often it is published."""
    return f"deposit:{tx_hash}:{log_index}"


def claim_command_id(tx_hash: str, log_index: int) -> str:
    """Settling an unclaimed deposit once its sender has been linked."""
    return f"claim:{tx_hash}:{log_index}"


def deposit_reference(tx_hash: str, log_index: int) -> str:
    """The ledger reference of a deposit: (tx_hash, log_index)."""
    return f"{tx_hash}:{log_index}"


class ChainDeposit(Command):
    """A confirmed BEZ ``Transfer`` to the treasury. ``amount`` is in token base units."""

    type: Literal["chain.deposit"] = "chain.deposit"
    command_id: str = Field(min_length=1, max_length=300)
    chain_key: str = Field(min_length=1, max_length=300)
    tx_hash: str = Field(pattern=TX_HASH_PATTERN)
    log_index: int = Field(ge=0)
    block_number: int = Field(ge=0)
    from_address: str = Field(pattern=r"^0x[0-9a-f]{40}$")  # lowercase
    amount: int = Field(ge=0, lt=2**256)
    decimals: int = Field(ge=0, le=77)


class _Body(Storable):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class LinkWallet(_Body):
    address: str = Field(pattern=ADDRESS_PATTERN)
    signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{130}$")
    nonce: str | None = Field(default=None, min_length=1, max_length=64)  # which challenge; default: the latest


class WalletDeposit(Outbound):
    """Sent to ``u/<user>`` when a deposit is credited."""

    txHash: str
    logIndex: int
    fromAddress: str
    amount: str  # tokens, exact decimal string
    credits: int  # whole credits granted now (fractions carry over)
    balance: int
