"""PostgreSQL session-level advisory locks on a pair of int4 keys (see :mod:`workers.locks`).

A separate key space from the single-bigint locks, such as the migration lock (``infra.db``).
"""

from __future__ import annotations

from infra.db import Conn


async def try_lock(conn: Conn, key: tuple[int, int]) -> bool:
    """Take the lock for this session if no other session holds it; False if one does."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key))


async def unlock(conn: Conn, key: tuple[int, int]) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, $2)", *key)
