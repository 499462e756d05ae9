"""Web3 access to the BEZ token: where the chain is, which token and treasury, deposits, balances.

Every process talks JSON-RPC over HTTP: to ``WEB3_PROVIDER_URL`` (a real node, with
``BEZ_CONTRACT_ADDRESS`` and ``TREASURY_ADDRESS``), or, when that is empty, to the embedded
development chain that the chain watcher hosts on ``CHAIN_RPC_HOST:CHAIN_RPC_PORT`` and that
names its freshly deployed token and treasury through the ``gk_chainInfo`` method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from infra.settings import Settings

ARTIFACT = Path(__file__).resolve().parent / "contracts" / "BEZ.json"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
CHAIN_INFO_METHOD = "gk_chainInfo"


class ChainUnavailable(Exception):
    """The node cannot be reached, or the chain is not configured."""


# What Gatekeeper calls on any BEZ deployment: the standard ERC-20 reads, ``transfer``, and the
# ``mint`` of contracts/BEZ.sol (dev tooling). Kept in code so an installed package (the Docker
# image has no contracts/ folder) can talk to a real node.
TOKEN_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "decimals",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "uint8"}],
    },
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "transfer",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "mint",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "event",
        "name": "Transfer",
        "anonymous": False,
        "inputs": [
            {"name": "from", "type": "address", "indexed": True},
            {"name": "to", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
]


@cache
def artifact() -> dict[str, Any]:
    """The committed ABI and bytecode (infra/contracts/BEZ.json, package data, rebuilt from
    contracts/BEZ.sol by contracts/build.sh). Only the embedded chain needs it, to deploy BEZ."""
    return json.loads(ARTIFACT.read_text())


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_id: int
    token: ChecksumAddress
    treasury: ChecksumAddress
    decimals: int
    embedded: bool
    minter: str | None = None  # the embedded chain's unlocked token owner

    @property
    def key(self) -> str:
        """Names the cursor: one per (chain, token, treasury), so a new dev chain starts afresh."""
        return f"{self.chain_id}:{self.token.lower()}:{self.treasury.lower()}"


@dataclass(frozen=True, slots=True)
class Deposit:
    tx_hash: str  # 0x, lowercase
    log_index: int
    block_number: int
    from_address: str  # 0x, lowercase
    amount: int  # token base units


def rpc_url(settings: Settings) -> str:
    return settings.web3_provider_url or f"http://{settings.chain_rpc_host}:{settings.chain_rpc_port}"


def connect(settings: Settings) -> AsyncWeb3:
    provider = AsyncHTTPProvider(rpc_url(settings), request_kwargs={"timeout": settings.chain_rpc_timeout_s})
    return AsyncWeb3(provider)


def token_contract(w3: AsyncWeb3, address: str) -> Any:
    return w3.eth.contract(address=to_checksum_address(address), abi=TOKEN_ABI)


async def resolve(w3: AsyncWeb3, settings: Settings) -> ChainInfo:
    """Which token and treasury to use on the chain ``w3`` reaches; raise ChainUnavailable."""
    try:
        if settings.web3_provider_url:
            if not (settings.bez_contract_address and settings.treasury_address):
                raise ChainUnavailable("WEB3_PROVIDER_URL needs BEZ_CONTRACT_ADDRESS and TREASURY_ADDRESS")
            token, treasury, minter = settings.bez_contract_address, settings.treasury_address, None
        else:
            response = await w3.provider.make_request(CHAIN_INFO_METHOD, [])
            if "result" not in response:
                raise ChainUnavailable(f"{rpc_url(settings)} is not Gatekeeper's embedded chain: {response}")
            token, treasury = response["result"]["token"], response["result"]["treasury"]
            minter = response["result"]["minter"]
        chain_id = await w3.eth.chain_id
        decimals = await token_contract(w3, token).functions.decimals().call()
    except ChainUnavailable:
        raise
    except Exception as exc:  # connection refused, timeouts, a node error: all mean "not now"
        raise ChainUnavailable(f"{rpc_url(settings)}: {type(exc).__name__}: {exc}") from exc
    return ChainInfo(
        chain_id,
        to_checksum_address(token),
        to_checksum_address(treasury),
        int(decimals),
        not settings.web3_provider_url,
        minter and to_checksum_address(minter),
    )


def _topic_address(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


def _hex(value: Any) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value).lower()


async def fetch_deposits(w3: AsyncWeb3, info: ChainInfo, from_block: int, to_block: int) -> list[Deposit]:
    """Every BEZ ``Transfer`` to the treasury in [from_block, to_block], in chain order."""
    logs = await w3.eth.get_logs(
        {
            "fromBlock": from_block,
            "toBlock": to_block,
            "address": info.token,
            "topics": [TRANSFER_TOPIC, None, _topic_address(info.treasury)],
        }
    )
    deposits = []
    for log in logs:
        if log.get("removed"):
            continue
        sender = "0x" + _hex(log["topics"][1])[-40:]
        data = log["data"]
        amount = int.from_bytes(data) if isinstance(data, bytes) else int(data, 16)
        deposits.append(
            Deposit(_hex(log["transactionHash"]), int(log["logIndex"]), int(log["blockNumber"]), sender.lower(), amount)
        )
    deposits.sort(key=lambda d: (d.block_number, d.log_index))
    return deposits


async def balance_of(w3: AsyncWeb3, info: ChainInfo, address: str) -> int:
    return int(await token_contract(w3, info.token).functions.balanceOf(to_checksum_address(address)).call())
