"""``python -m scripts.chain``: move test BEZ on the chain Gatekeeper watches.

    python -m scripts.chain info                          # token, treasury, block height
    python -m scripts.chain account                       # a new key pair for a test wallet
    python -m scripts.chain mint ADDRESS 100              # mint 100 BEZ (embedded chain: also gas money)
    python -m scripts.chain transfer 12.5 --key 0xKEY     # send 12.5 BEZ to the treasury: a deposit
    python -m scripts.chain transfer 3 --key 0xKEY --to 0xADDRESS
    python -m scripts.chain balance ADDRESS
    python -m scripts.chain link alice --key 0xKEY        # link the wallet to user alice (dev JWT)
    python -m scripts.chain sign "MESSAGE" --key 0xKEY    # EIP-191 signature for POST /api/wallet/link
    python -m scripts.chain mine 3                        # embedded chain only: mine empty blocks

Amounts are BEZ (decimals respected, exactly). On the embedded chain the token owner is an
unlocked account; on a real node ``mint`` needs the owner's ``--key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception
from web3.types import TxParams, Wei

from domain.chain import format_units, parse_units
from infra import chain
from infra.chain import ChainInfo
from infra.recursion_limit import pin_recursion_limit
from infra.settings import Settings
from scripts.token import mint as make_jwt

GAS_TOP_UP_WEI = 10**18  # 1 ETH of gas money for a fresh test wallet on the embedded chain


class ChainScriptError(Exception):
    pass


async def _send(w3: AsyncWeb3, tx: TxParams, key: str | None) -> dict[str, Any]:
    """Send (signing locally when ``key`` is given) and wait for a successful receipt."""
    if key is None:
        tx_hash = await w3.eth.send_transaction(tx)  # an unlocked account of the embedded chain
    else:
        account = Account.from_key(key)
        tx = {**tx, "from": account.address, "nonce": await w3.eth.get_transaction_count(account.address)}
        tx.setdefault("chainId", await w3.eth.chain_id)
        if "gas" not in tx:
            tx["gas"] = await w3.eth.estimate_gas(tx)
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            tx["gasPrice"] = await w3.eth.gas_price
        tx_hash = await w3.eth.send_raw_transaction(Account.sign_transaction(tx, key).raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    if receipt["status"] != 1:
        raise ChainScriptError(f"transaction {tx_hash.to_0x_hex()} reverted")
    return dict(receipt)


async def fund_gas(w3: AsyncWeb3, info: ChainInfo, address: str) -> None:
    """Embedded chain only: give a fresh wallet gas money from the token owner."""
    if info.minter and await w3.eth.get_balance(to_checksum_address(address)) < GAS_TOP_UP_WEI // 10:
        await _send(w3, {"from": info.minter, "to": to_checksum_address(address), "value": Wei(GAS_TOP_UP_WEI)}, None)


async def mint(w3: AsyncWeb3, info: ChainInfo, to: str, units: int, key: str | None = None) -> dict[str, Any]:
    if key is None and info.minter is None:
        raise ChainScriptError("on a real node, mint needs the token owner's --key")
    sender = info.minter if key is None else Account.from_key(key).address
    tx = (
        await chain.token_contract(w3, info.token)
        .functions.mint(to_checksum_address(to), units)
        .build_transaction({"from": sender})
    )
    receipt = await _send(w3, tx, key)
    await fund_gas(w3, info, to)
    return receipt


async def transfer(w3: AsyncWeb3, info: ChainInfo, key: str, units: int, to: str | None = None) -> dict[str, Any]:
    """Send ``units`` from ``key``'s wallet, to the treasury unless ``to`` is given."""
    sender = Account.from_key(key).address
    target = to_checksum_address(to or info.treasury)
    tx = (
        await chain.token_contract(w3, info.token).functions.transfer(target, units).build_transaction({"from": sender})
    )
    return await _send(w3, tx, key)


def sign(message: str, key: str) -> str:
    return Account.sign_message(encode_defunct(text=message), private_key=key).signature.to_0x_hex()


async def link(base_url: str, jwt: str, key: str) -> dict[str, Any]:
    """What a wallet app does: ask for a challenge, sign it with the wallet's key, post the signature."""
    headers = {"Authorization": f"Bearer {jwt}"}
    async with aiohttp.ClientSession(base_url.rstrip("/") + "/") as http:
        async with http.post("api/wallet/link/challenge", headers=headers) as r:
            challenge = await r.json()
            if r.status != 201:
                raise ChainScriptError(f"challenge: HTTP {r.status}: {challenge}")
        body = {
            "address": Account.from_key(key).address,
            "signature": sign(challenge["message"], key),
            "nonce": challenge["nonce"],
        }
        async with http.post("api/wallet/link", json=body, headers=headers) as r:
            answer = await r.json()
            if r.status not in (200, 201):
                raise ChainScriptError(f"link: HTTP {r.status}: {answer}")
            return answer


async def _run(args: argparse.Namespace) -> str:
    settings = Settings()
    w3 = chain.connect(settings)
    try:
        info = await chain.resolve(w3, settings)
        if args.command == "info":
            return (
                f"chain id   {info.chain_id}\ntoken      {info.token} (BEZ, {info.decimals} decimals)\n"
                f"treasury   {info.treasury}\nblock      {await w3.eth.block_number}\n"
                f"rpc        {chain.rpc_url(settings)}"
            )
        if args.command == "mint":
            receipt = await mint(w3, info, args.address, parse_units(args.amount, info.decimals), args.key)
            return f"minted {args.amount} BEZ to {to_checksum_address(args.address)} in block {receipt['blockNumber']}"
        if args.command == "transfer":
            receipt = await transfer(w3, info, args.key, parse_units(args.amount, info.decimals), args.to)
            target = "the treasury" if args.to is None else to_checksum_address(args.to)
            return (
                f"sent {args.amount} BEZ to {target} in block {receipt['blockNumber']},"
                f" tx {receipt['transactionHash'].to_0x_hex()}"
            )
        if args.command == "balance":
            return f"{format_units(await chain.balance_of(w3, info, args.address), info.decimals)} BEZ"
        if args.command == "mine":
            if not info.embedded:
                raise ChainScriptError("mine works on the embedded chain only")
            response = await w3.provider.make_request("evm_mine", [args.blocks])
            return f"block {int(response['result'], 16)}"
        raise ChainScriptError(f"unknown command {args.command}")
    finally:
        await w3.provider.disconnect()


def main() -> int:
    pin_recursion_limit()  # eth_account's py_ecc raised it on import (infra/recursion_limit.py)
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="token, treasury and block height")
    sub.add_parser("account", help="print a new key pair (a test wallet)")
    p = sub.add_parser("mint", help="mint BEZ to an address")
    p.add_argument("address")
    p.add_argument("amount")
    p.add_argument("--key", help="the token owner's private key (real nodes)")
    p = sub.add_parser("transfer", help="send BEZ from a wallet (to the treasury by default: a deposit)")
    p.add_argument("amount")
    p.add_argument("--key", required=True, help="the sending wallet's private key")
    p.add_argument("--to", help="recipient address (default: the treasury)")
    p = sub.add_parser("balance", help="BEZ balance of an address")
    p.add_argument("address")
    p = sub.add_parser("link", help="link a wallet to a user through an ingress node (signs with a dev JWT)")
    p.add_argument("user_id")
    p.add_argument("--key", required=True, help="the wallet's private key")
    p.add_argument("--url", help="an ingress node (default: http://HOST:PORT from the settings)")
    p = sub.add_parser("sign", help="sign a message (EIP-191), e.g. a wallet-link challenge")
    p.add_argument("message")
    p.add_argument("--key", required=True)
    p = sub.add_parser("mine", help="mine empty blocks (embedded chain)")
    p.add_argument("blocks", type=int, nargs="?", default=1)
    args = parser.parse_args()
    try:
        if args.command == "link":
            settings = Settings()
            jwt = make_jwt(settings.jwt_secret.get_secret_value(), args.user_id, None, False, 3600)
            url = args.url or f"http://{settings.host}:{settings.port}"
            print(json.dumps(asyncio.run(link(url, jwt, args.key))))
        elif args.command == "account":
            account = Account.create()
            print(f"address      {account.address}\nprivate key  {account.key.to_0x_hex()}")
        elif args.command == "sign":
            print(sign(args.message, args.key))
        else:
            print(asyncio.run(_run(args)))
    except (chain.ChainUnavailable, ChainScriptError, ValueError, aiohttp.ClientError, Web3Exception) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
