"""``python -m workers.chain_watcher``: turn confirmed BEZ transfers to the treasury into deposit commands.

The cursor (``chain_cursors.next_block``) is advanced only after RabbitMQ has confirmed every
deposit of the scanned range, with a compare-and-set. A crash between the publish and the
advance re-reads the range and publishes the same deposits again under the same
``deposit:<tx_hash>:<log_index>`` command ids, which the worker applies once: nothing is lost
and nothing is doubled. Only blocks at least ``CHAIN_CONFIRMATIONS`` deep are read, so a
reorganisation shallower than that never reaches the ledger.

With no ``WEB3_PROVIDER_URL`` this process also hosts the embedded development chain and serves
it on ``CHAIN_RPC_HOST:CHAIN_RPC_PORT``; ``--serve-only`` hosts it without watching.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Callable

import asyncpg
import structlog
from web3 import AsyncWeb3

from infra import chain, db, deposits
from infra.chain import ChainInfo, ChainUnavailable, Deposit
from infra.embedded_chain import EmbeddedChain
from infra.logging import configure_logging
from infra.publisher import CommandPublisher, PublishFailed
from infra.recursion_limit import pin_recursion_limit
from infra.settings import Settings
from schemas.chain import ChainDeposit, claim_command_id, deposit_command_id
from schemas.queues import CHAIN_DEPOSIT_ACTOR, CHAIN_QUEUE

log = structlog.get_logger(__name__)

CLAIM_REPUBLISH_S = 60.0  # a claim not yet applied is published again after this long


class ChainWatcher:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, publisher: CommandPublisher, w3: AsyncWeb3) -> None:
        self._settings = settings
        self._pool = pool
        self._publisher = publisher
        self._w3 = w3
        self._info: ChainInfo | None = None
        self._claims_sent: dict[str, float] = {}
        self.behind = False  # the last scan read a full batch: more confirmed blocks may be waiting

    async def info(self) -> ChainInfo:
        if self._info is None:
            self._info = await chain.resolve(self._w3, self._settings)
            log.info(
                "chain.watching",
                chain_key=self._info.key,
                token=self._info.token,
                treasury=self._info.treasury,
                decimals=self._info.decimals,
            )
        return self._info

    async def cursor(self, info: ChainInfo) -> int:
        """The next block to read; a new (chain, token, treasury) starts at CHAIN_START_BLOCK."""
        return await deposits.cursor(self._pool, info.key, self._settings.chain_start_block)

    async def confirmed_range(self, info: ChainInfo) -> tuple[int, int] | None:
        """[from, to] of blocks not yet read that have CHAIN_CONFIRMATIONS blocks on top, if any."""
        start = await self.cursor(info)
        safe = await self._w3.eth.block_number - self._settings.chain_confirmations
        if safe < start:
            return None
        return start, min(safe, start + self._settings.chain_scan_batch_blocks - 1)

    async def publish(self, info: ChainInfo, deposits: list[Deposit]) -> None:
        """Return once RabbitMQ confirmed every deposit; raise PublishFailed otherwise."""
        for d in deposits:
            await self._publisher.publish(CHAIN_QUEUE, CHAIN_DEPOSIT_ACTOR, _command(info, d, deposit_command_id))

    async def advance(self, info: ChainInfo, start: int, next_block: int) -> bool:
        """Move the cursor from ``start`` to ``next_block``; False if another watcher moved it first."""
        return await deposits.advance_cursor(self._pool, info.key, start, next_block)

    async def scan_once(self) -> int:
        """Read one confirmed range; the number of deposits published (0 when nothing is confirmed)."""
        info = await self.info()
        span = await self.confirmed_range(info)
        self.behind = False
        if span is None:
            return 0
        start, end = span
        deposits = await chain.fetch_deposits(self._w3, info, start, end)
        await self.publish(info, deposits)
        moved = await self.advance(info, start, end + 1)
        self.behind = end - start + 1 >= self._settings.chain_scan_batch_blocks
        report = log.info if deposits or not moved else log.debug  # an empty block every poll is not news
        report("chain.scanned", from_block=start, to_block=end, deposits=len(deposits), advanced=moved)
        return len(deposits)

    async def sweep_claims(self) -> int:
        """Publish a claim for each unclaimed deposit whose sender has been linked since."""
        unclaimed = await deposits.unclaimed_of_linked(self._pool)
        now = time.monotonic()
        self._claims_sent = {k: t for k, t in self._claims_sent.items() if now - t < CLAIM_REPUBLISH_S}
        published = 0
        for d in unclaimed:
            command_id = claim_command_id(d.tx_hash, d.log_index)
            if command_id in self._claims_sent:
                continue
            cmd = ChainDeposit(
                command_id=command_id,
                chain_key=d.chain_key,
                tx_hash=d.tx_hash,
                log_index=d.log_index,
                block_number=d.block_number,
                from_address=d.from_address,
                amount=d.amount,
                decimals=d.decimals,
            )
            await self._publisher.publish(CHAIN_QUEUE, CHAIN_DEPOSIT_ACTOR, cmd)
            self._claims_sent[command_id] = now
            published += 1
        if published:
            log.info("chain.claims_published", count=published)
        return published

    async def run(self, stop: asyncio.Event) -> None:
        """Scan until ``stop``; every fault (node, broker, database) is logged and retried."""
        delay = self._settings.chain_poll_interval_s
        while not stop.is_set():
            try:
                while await self._scan_more() and not stop.is_set():
                    pass  # catching up: scan the next batch at once
                await self.sweep_claims()
                delay = self._settings.chain_poll_interval_s
            except (ChainUnavailable, PublishFailed, OSError, asyncpg.PostgresError) as exc:
                self._info = None if isinstance(exc, ChainUnavailable) else self._info
                log.warning("chain.scan_failed", error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                delay = min(delay * 2, 30.0)
            except Exception as exc:  # a node's odd answer must not stop the watcher
                log.exception("chain.scan_error", error=repr(exc), retry_in_s=delay)
                delay = min(delay * 2, 30.0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _scan_more(self) -> bool:
        """Scan one range; True if a full batch was read, so more confirmed blocks may be waiting."""
        await self.scan_once()
        return self.behind


def _command(info: ChainInfo, d: Deposit, make_id: Callable[[str, int], str]) -> ChainDeposit:
    return ChainDeposit(
        command_id=make_id(d.tx_hash, d.log_index),
        chain_key=info.key,
        tx_hash=d.tx_hash,
        log_index=d.log_index,
        block_number=d.block_number,
        from_address=d.from_address,
        amount=d.amount,
        decimals=info.decimals,
    )


async def _main(serve_only: bool) -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="chain-watcher")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    background: list[asyncio.Task[None]] = []
    runner = None
    if not settings.web3_provider_url:
        if settings.chain_rpc_host not in ("127.0.0.1", "localhost", "::1"):
            note = "the embedded chain's token owner is unlocked: anyone who reaches it can mint"
            log.warning("chain.embedded.exposed", host=settings.chain_rpc_host, note=note)
        embedded = EmbeddedChain(settings.treasury_address or None)
        runner = await embedded.serve(settings.chain_rpc_host, settings.chain_rpc_port)
        if settings.chain_block_time_s > 0:
            background.append(asyncio.create_task(embedded.produce_blocks(settings.chain_block_time_s)))
    try:
        if serve_only:
            if runner is None:
                raise SystemExit("--serve-only hosts the embedded chain; unset WEB3_PROVIDER_URL")
            log.info("chain.serve_only")
            await stop.wait()
            return
        await db.migrate(settings.database_url)
        pool = await db.create_pool(settings.database_url, min_size=1, max_size=2)
        publisher = CommandPublisher(
            settings.amqp_url,
            (CHAIN_QUEUE,),
            settings.publish_timeout_s,
            connection_name="gatekeeper-chain-watcher",
            queue_type=settings.amqp_queue_type,
        )
        await publisher.start()
        w3 = chain.connect(settings)
        try:
            log.info("chain.watcher.started", rpc=chain.rpc_url(settings), confirmations=settings.chain_confirmations)
            await ChainWatcher(settings, pool, publisher, w3).run(stop)
        finally:
            await w3.provider.disconnect()
            await publisher.close()
            await pool.close()
    finally:
        for task in background:
            task.cancel()
        if runner is not None:
            await runner.cleanup()
        log.info("chain.watcher.stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.chain_watcher", description=__doc__)
    parser.add_argument("--serve-only", action="store_true", help="host the embedded chain without watching it")
    args = parser.parse_args()
    pin_recursion_limit()  # py-evm and py_ecc raised it on import (infra/recursion_limit.py)
    asyncio.run(_main(args.serve_only))


if __name__ == "__main__":
    main()
