"""The embedded development chain: eth-tester (py-evm) in this process, BEZ deployed at start-up,
served as JSON-RPC on a loopback port so other processes (ingress, ``scripts.chain``) can use it.

Each start is a new chain: the token is deployed by a fresh random key, so its address, and
with it every transaction hash, differ from any earlier run; the watcher's cursor is keyed by
that address, so a restarted dev chain is read from its first block. Besides the standard
``eth_*`` methods it answers ``gk_chainInfo`` (token, treasury, minter) and ``evm_mine [n]``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import structlog
from aiohttp import web
from eth_abi import abi
from eth_account import Account
from eth_tester import EthereumTester
from eth_tester.exceptions import TransactionFailed
from eth_typing import ChecksumAddress
from web3 import EthereumTesterProvider, Web3
from web3.middleware import combine_middleware
from web3.types import Wei

from infra.chain import CHAIN_INFO_METHOD, artifact

log = structlog.get_logger(__name__)

MAX_BATCH = 100


class EmbeddedChain:
    def __init__(self, treasury: str | None = None) -> None:
        self.tester = EthereumTester()
        self.provider = EthereumTesterProvider(self.tester)
        self.w3 = Web3(self.provider)
        self._request = combine_middleware(
            middleware=self.provider._middleware, w3=self.w3, provider_request_fn=self.provider.make_request
        )
        self._lock = threading.Lock()  # py-evm is not thread-safe; requests run in a worker thread
        # eth-tester's chain has 10 funded accounts; web3 types eth.accounts as a tuple of one.
        accounts: tuple[ChecksumAddress, ...] = self.w3.eth.accounts
        funder = accounts[0]
        minter = Account.create()
        self.tester.add_account(minter.key.to_0x_hex())
        self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_transaction({"from": funder, "to": minter.address, "value": Wei(10**21)})
        )
        contract = self.w3.eth.contract(abi=artifact()["abi"], bytecode=artifact()["bytecode"])
        receipt = self.w3.eth.wait_for_transaction_receipt(contract.constructor().transact({"from": minter.address}))
        token = receipt["contractAddress"]
        assert token is not None  # a deployment's receipt names the contract it created
        self.token: ChecksumAddress = token
        self.minter: str = minter.address
        self.treasury: ChecksumAddress = Web3.to_checksum_address(treasury) if treasury else accounts[1]
        self.deployed_block: int = receipt["blockNumber"]

    def info(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "treasury": self.treasury,
            "minter": self.minter,
            "deployedBlock": self.deployed_block,
        }

    def mine(self, blocks: int = 1) -> None:
        with self._lock:
            self.tester.mine_blocks(blocks)

    def call(self, method: str, params: Any) -> dict[str, Any]:
        """Answer one JSON-RPC request (without its id)."""
        if method == CHAIN_INFO_METHOD:
            return {"jsonrpc": "2.0", "result": self.info()}
        if method == "evm_mine":
            count = params[0] if isinstance(params, list) and params else 1
            if not isinstance(count, int) or not 1 <= count <= 10_000:
                return _error(-32602, "evm_mine takes an optional block count of 1-10000")
            self.mine(count)
            return {"jsonrpc": "2.0", "result": hex(self.w3.eth.block_number)}
        with self._lock:
            try:
                return dict(self._request(method, params if params is not None else []))
            except TransactionFailed as exc:  # a revert, answered as geth does: code 3 with Error(string)
                reason = str(exc).removeprefix("execution reverted: ")
                data = "0x08c379a0" + abi.encode(["string"], [reason]).hex()
                error = {"code": 3, "message": f"execution reverted: {reason}", "data": data}
                return {"jsonrpc": "2.0", "error": error}
            except Exception as exc:  # bad params and the like: the client gets a JSON-RPC error
                return _error(-32000, f"{type(exc).__name__}: {exc}")

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json(_error(-32700, "parse error"))
        if isinstance(body, list):
            if not 1 <= len(body) <= MAX_BATCH:
                return _json(_error(-32600, f"a batch holds 1-{MAX_BATCH} requests"))
            return _json([await self._one(item) for item in body])
        return _json(await self._one(body))

    async def _one(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or not isinstance(item.get("method"), str):
            return _error(-32600, "invalid request")
        response = await asyncio.to_thread(self.call, item["method"], item.get("params"))
        response["id"] = item.get("id")
        return response

    async def serve(self, host: str, port: int) -> web.AppRunner:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("chain.embedded.serving", url=f"http://{host}:{port}", **self.info())
        return runner

    async def produce_blocks(self, interval_s: float) -> None:
        """Mine an empty block every ``interval_s``, like a live network, so deposits get confirmations."""
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.mine, 1)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}}


def _json(payload: Any) -> web.Response:
    return web.Response(text=Web3.to_json(payload), content_type="application/json")
