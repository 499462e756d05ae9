"""The chain watcher and the deposit use case against a real in-process chain (over JSON-RPC),
the real RabbitMQ and the real PostgreSQL: confirmations, crashes between publish and cursor
advance, unlinked senders, fractions and redeliveries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from infra import chain
from infra.embedded_chain import EmbeddedChain
from infra.publisher import CommandPublisher
from schemas.queues import CHAIN_QUEUE
from tests.support.devchain import BEZ, DevChain, drain_deposits
from tests.support.processes import free_port
from workers import chain_service
from workers.chain_watcher import ChainWatcher

CONFIRMATIONS = 3


@pytest.fixture
async def devchain(settings) -> AsyncIterator[DevChain]:
    embedded = EmbeddedChain()
    port = free_port()
    runner = await embedded.serve("127.0.0.1", port)
    s = settings.model_copy(
        update={"chain_rpc_port": port, "chain_confirmations": CONFIRMATIONS, "web3_provider_url": ""}
    )
    w3 = chain.connect(s)
    info = await chain.resolve(w3, s)
    yield DevChain(embedded, s, w3, info)
    await w3.provider.disconnect()
    await runner.cleanup()


@pytest.fixture
async def publisher(iso) -> AsyncIterator[CommandPublisher]:
    pub = CommandPublisher(iso.amqp_url, (CHAIN_QUEUE,), 5.0, connection_name="test-chain")
    await pub.start()
    await drain_deposits(iso.amqp_url)  # nothing left over from another test
    yield pub
    await pub.close()


def watcher(devchain: DevChain, pool, publisher) -> ChainWatcher:
    return ChainWatcher(devchain.settings, pool, publisher, devchain.w3)


async def link(pool, user: str, address: str) -> None:
    await pool.execute("INSERT INTO wallet_links (address, user_id) VALUES ($1, $2)", address.lower(), user)


async def credits(pool, user: str) -> int:
    return await pool.fetchval("SELECT coalesce(max(credits), 0) FROM accounts WHERE account_id = $1", f"user:{user}")


async def settle(pool, amqp_url: str) -> list:
    """What the chain worker does with every published deposit."""
    return [await chain_service.apply_deposit(pool, cmd) for cmd in await drain_deposits(amqp_url)]


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_deposit_is_credited_only_after_confirmations(ledger, devchain, publisher, iso):
    user = new_user()
    wallet = await devchain.wallet()
    await link(ledger, user, wallet.address)
    w = watcher(devchain, ledger, publisher)
    await w.scan_once()
    await settle(ledger, iso.amqp_url)  # the mints, confirmed by now or not, are not deposits

    receipt = await devchain.deposit(wallet, 7 * BEZ)
    for _ in range(CONFIRMATIONS):
        await w.scan_once()
        assert await settle(ledger, iso.amqp_url) == [], "credited before CHAIN_CONFIRMATIONS blocks on top"
        assert await credits(ledger, user) == 0
        await devchain.mine(1)
    assert await devchain.block() == receipt["blockNumber"] + CONFIRMATIONS
    assert await w.scan_once() == 1
    outcomes = await settle(ledger, iso.amqp_url)
    assert [o.status for o in outcomes] == ["applied"]
    assert outcomes[0].emits[0]["event"] == "walletDeposit"
    assert outcomes[0].emits[0]["data"]["credits"] == 7
    assert await credits(ledger, user) == 7
    ref = f"{receipt['transactionHash'].to_0x_hex()}:{receipt['logs'][0]['logIndex']}"
    assert (
        await ledger.fetchval("SELECT count(*) FROM ledger_transactions WHERE kind = 'deposit' AND reference = $1", ref)
        == 1
    )


async def test_crash_between_publish_and_cursor_advance_neither_loses_nor_doubles(ledger, devchain, publisher, iso):
    user = new_user()
    wallet = await devchain.wallet()
    await link(ledger, user, wallet.address)
    await devchain.deposit(wallet, 2 * BEZ)
    await devchain.deposit(wallet, 3 * BEZ)
    await devchain.mine(CONFIRMATIONS)

    # The first watcher reads the range and publishes, then dies before advancing the cursor.
    first = watcher(devchain, ledger, publisher)
    info = await first.info()
    start, end = await first.confirmed_range(info)
    await first.publish(info, await chain.fetch_deposits(devchain.w3, info, start, end))
    assert await first.cursor(info) == start

    # A restarted watcher reads the same range again, publishes again, and advances.
    second = watcher(devchain, ledger, publisher)
    assert await second.scan_once() == 2
    assert await second.cursor(info) == end + 1
    assert await second.scan_once() == 0  # nothing read twice once the cursor moved

    commands = await drain_deposits(iso.amqp_url)
    assert len(commands) == 4  # every deposit published twice ...
    outcomes = [await chain_service.apply_deposit(ledger, c) for c in commands]
    assert sorted(o.fresh for o in outcomes) == [False, False, True, True]
    assert await credits(ledger, user) == 5  # ... and credited once
    assert (
        await ledger.fetchval("SELECT count(*) FROM chain_deposits WHERE from_address = $1", wallet.address.lower())
        == 2
    )


async def test_stale_watcher_does_not_move_a_cursor_another_advanced(ledger, devchain, publisher, iso):
    a, b = watcher(devchain, ledger, publisher), watcher(devchain, ledger, publisher)
    await devchain.mine(CONFIRMATIONS + 2)
    info = await a.info()
    start, end = await a.confirmed_range(info)
    assert await b.scan_once() == 0
    assert not await a.advance(info, start, end + 1 - 1)  # compare-and-set: b already moved it
    assert await a.cursor(info) == end + 1
    await settle(ledger, iso.amqp_url)


async def test_unlinked_sender_is_unclaimed_then_credited_once_linked(ledger, devchain, publisher, iso):
    user = new_user()
    wallet = await devchain.wallet()
    await devchain.deposit(wallet, 4 * BEZ)
    await devchain.mine(CONFIRMATIONS)
    w = watcher(devchain, ledger, publisher)
    assert await w.scan_once() == 1
    [original] = await drain_deposits(iso.amqp_url)
    outcome = await chain_service.apply_deposit(ledger, original)
    assert outcome.emits == []
    row = await ledger.fetchrow(
        "SELECT status, user_id, amount FROM chain_deposits WHERE from_address = $1", wallet.address.lower()
    )
    assert (row["status"], row["user_id"], int(row["amount"])) == ("unclaimed", None, 4 * BEZ)
    assert await w.sweep_claims() == 0  # not linked yet: nothing to claim

    await link(ledger, user, wallet.address)
    assert await w.sweep_claims() == 1
    assert await w.sweep_claims() == 0  # published once while the worker catches up
    [claim] = await settle(ledger, iso.amqp_url)
    assert claim.emits[0]["data"]["credits"] == 4
    assert await credits(ledger, user) == 4
    # The original deposit command redelivered, and a claim replayed, change nothing.
    assert not (await chain_service.apply_deposit(ledger, original)).fresh
    replayed = original.model_copy(update={"command_id": "deposit:replay-" + original.command_id})
    assert (await chain_service.apply_deposit(ledger, replayed)).emits == []
    assert await credits(ledger, user) == 4
    row = await ledger.fetchrow(
        "SELECT status, user_id FROM chain_deposits WHERE from_address = $1", wallet.address.lower()
    )
    assert (row["status"], row["user_id"]) == ("credited", user)


async def test_fractions_accumulate_into_whole_credits_exactly(ledger, devchain, publisher, iso):
    user = new_user()
    wallet = await devchain.wallet()
    await link(ledger, user, wallet.address)
    w = watcher(devchain, ledger, publisher)
    seen = []
    amounts = (BEZ // 2, BEZ * 3 // 4, BEZ * 3 // 4 + 1, 2 * BEZ + 3)  # 0.5, 0.75, 0.75 + 1 wei, 2 + 3 wei
    for amount in amounts:
        await devchain.deposit(wallet, amount)
        await devchain.mine(CONFIRMATIONS)
        await w.scan_once()
        await settle(ledger, iso.amqp_url)
        seen.append(await credits(ledger, user))
    assert seen == [0, 1, 2, 4]
    carry = await ledger.fetchval("SELECT base_units FROM chain_fractions WHERE user_id = $1", user)
    assert int(carry) == 4  # 1 wei + 3 wei left over
    assert seen[-1] * BEZ + int(carry) == sum(amounts)  # every base unit accounted for


async def test_redelivered_deposit_command_credits_once(ledger, devchain, publisher, iso):
    user = new_user()
    wallet = await devchain.wallet()
    await link(ledger, user, wallet.address)
    await devchain.deposit(wallet, 9 * BEZ)
    await devchain.mine(CONFIRMATIONS)
    await watcher(devchain, ledger, publisher).scan_once()
    [cmd] = await drain_deposits(iso.amqp_url)
    outcomes = [await chain_service.apply_deposit(ledger, cmd) for _ in range(5)]
    assert [o.fresh for o in outcomes] == [True, False, False, False, False]
    assert all(o.emits == outcomes[0].emits for o in outcomes)  # the stored result is re-published
    assert await credits(ledger, user) == 9


async def test_transfers_not_to_the_treasury_are_ignored(ledger, devchain, publisher, iso):
    user = new_user()
    wallet = await devchain.wallet()
    await link(ledger, user, wallet.address)
    other = await devchain.wallet(0)
    from scripts import chain as chain_script

    await chain_script.transfer(devchain.w3, devchain.info, wallet.key.to_0x_hex(), 5 * BEZ, other.address)
    await devchain.mine(CONFIRMATIONS)
    assert await watcher(devchain, ledger, publisher).scan_once() == 0
    assert await settle(ledger, iso.amqp_url) == []
    assert await credits(ledger, user) == 0


async def test_embedded_chain_produces_blocks_and_answers_bad_requests(devchain):
    import asyncio

    start = await devchain.block()
    producer = asyncio.create_task(devchain.embedded.produce_blocks(0.05))
    try:
        await asyncio.sleep(0.6)
    finally:
        producer.cancel()
    assert await devchain.block() >= start + 3
    bad = await devchain.w3.provider.make_request("evm_mine", [0])
    assert bad["error"]["code"] == -32602
    unknown = await devchain.w3.provider.make_request("eth_noSuchMethod", [])
    assert "error" in unknown


async def test_only_the_owner_mints_and_nobody_spends_more_than_they_hold(devchain):
    from web3.exceptions import ContractLogicError

    from scripts import chain as chain_script

    wallet = await devchain.wallet(2 * BEZ)
    stranger = await devchain.wallet(0)
    with pytest.raises(ContractLogicError, match="only the owner mints"):
        await chain_script.mint(devchain.w3, devchain.info, stranger.address, BEZ, key=wallet.key.to_0x_hex())
    with pytest.raises(ContractLogicError, match="balance too low"):
        await chain_script.transfer(devchain.w3, devchain.info, wallet.key.to_0x_hex(), 3 * BEZ)
    assert await chain.balance_of(devchain.w3, devchain.info, wallet.address) == 2 * BEZ
    assert await chain.balance_of(devchain.w3, devchain.info, stranger.address) == 0
