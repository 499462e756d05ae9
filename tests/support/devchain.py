"""The embedded BEZ chain for tests: served on a free loopback port, used over real JSON-RPC."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aio_pika
from eth_account import Account
from web3 import AsyncWeb3

from infra.amqp import topology
from infra.chain import ChainInfo
from infra.embedded_chain import EmbeddedChain
from infra.settings import Settings
from schemas.chain import ChainDeposit
from schemas.queues import CHAIN_QUEUE
from scripts import chain as chain_script

BEZ = 10**18


@dataclass
class DevChain:
    embedded: EmbeddedChain
    settings: Settings
    w3: AsyncWeb3
    info: ChainInfo

    async def mine(self, blocks: int = 1) -> int:
        response = await self.w3.provider.make_request("evm_mine", [blocks])
        return int(response["result"], 16)

    async def block(self) -> int:
        return await self.w3.eth.block_number

    async def wallet(self, bez_units: int = 100 * BEZ) -> Account:
        """A fresh wallet holding ``bez_units`` and gas money."""
        account = Account.create()
        await chain_script.mint(self.w3, self.info, account.address, bez_units)
        return account

    async def deposit(self, account: Account, units: int) -> dict:
        return await chain_script.transfer(self.w3, self.info, account.key.to_0x_hex(), units)


async def drain_deposits(amqp_url: str) -> list[ChainDeposit]:
    """Take every deposit command waiting on the chain queue, as a worker would receive them."""
    commands = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name, arguments in topology(CHAIN_QUEUE):
            await channel.declare_queue(name, durable=True, arguments=arguments)
        queue = await channel.get_queue(CHAIN_QUEUE)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            commands.append(ChainDeposit.model_validate(json.loads(message.body)["kwargs"]["command"]))
            await message.ack()
    return commands
