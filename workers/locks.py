"""Per-key locks held across processes while a slow external call is in flight.

Used so that at most one worker at a time sends an outbound message or calls the model for
a trigger, without holding a pooled database connection during the network call.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

from infra import advisory_locks

log = structlog.get_logger(__name__)


def _lock_keys(message_id: uuid.UUID) -> tuple[int, int]:
    """Two int4 advisory-lock keys from the uuid's 128 bits, folded to 64 (a separate key space
    from the single-bigint locks, such as the migration lock)."""
    raw = message_id.bytes
    return struct.unpack(">ii", bytes(a ^ b for a, b in zip(raw[:8], raw[8:], strict=True)))


class SendLocks:
    """Which messages this process is sending right now, visible to every other process.

    In-process, a set (every coroutine runs on the worker process's one event loop). Across
    processes, a PostgreSQL session-level advisory lock per message, all held by one dedicated
    connection: when the process dies, its connection closes and PostgreSQL drops its locks, so a
    redelivered command can send at once, while a duplicate delivered alongside a live sender
    cannot. The pool's connections cannot hold them: asyncpg resets a connection (unlocking all)
    when it is released, and holding one per send would tie a connection to every HTTP call.

    If the dedicated connection breaks, the locks it held are gone; it reconnects on next use and
    the sends then in flight are protected only inside this process until they finish.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: asyncpg.Connection | None = None
        self._generation = 0
        self._io = asyncio.Lock()  # one query at a time on the connection
        self._local: set[uuid.UUID] = set()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            if self._conn is not None:
                log.warning("outbound.send_locks_lost", held=len(self._local))
            self._conn = await asyncpg.connect(self._url, command_timeout=10)
            self._generation += 1
        return self._conn

    async def _try_lock(self, key: tuple[int, int]) -> int | None:
        async with self._io:
            conn = await self._connection()
            return self._generation if await advisory_locks.try_lock(conn, key) else None

    async def _unlock(self, key: tuple[int, int], generation: int) -> None:
        async with self._io:
            if generation != self._generation or self._conn is None or self._conn.is_closed():
                return  # that session is gone, and its locks with it
            try:
                await advisory_locks.unlock(self._conn, key)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("outbound.unlock_failed", error=repr(exc))
                self._conn.terminate()

    @asynccontextmanager
    async def hold(self, message_id: uuid.UUID) -> AsyncIterator[bool]:
        """Yields True if this caller now holds the message, False if someone else does."""
        if message_id in self._local:
            yield False
            return
        self._local.add(message_id)
        try:
            key = _lock_keys(message_id)
            generation = await self._try_lock(key)
            if generation is None:
                yield False
                return
            try:
                yield True
            finally:
                await self._unlock(key, generation)
        finally:
            self._local.discard(message_id)

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
        self._conn = None
