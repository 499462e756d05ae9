"""The idempotency inbox, which doubles as the log of every command a worker has seen.

A worker claims a command by inserting its row inside the same transaction that
applies it. A duplicate blocks on the unique key until the first transaction
ends, then finds the row and re-publishes the stored result instead of applying
it again. A command recorded as ``failed`` may be claimed again (by a replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

Status = Literal["applied", "rejected", "failed"]


@dataclass(frozen=True, slots=True)
class Stored:
    status: Status
    result: dict[str, Any]


async def claim(conn: asyncpg.Connection, command_id: str, kind: str, user_id: str | None) -> Stored | None:
    """Claim ``command_id`` for this transaction; return the stored outcome if it was already applied."""
    claimed = await conn.fetchval(
        "INSERT INTO inbox (command_id, kind, user_id, status) VALUES ($1, $2, $3, 'applied')"
        " ON CONFLICT (command_id) DO UPDATE SET attempts = inbox.attempts + 1, updated_at = now()"
        " WHERE inbox.status = 'failed' RETURNING true",
        command_id,
        kind,
        user_id,
    )
    if claimed:
        return None
    row = await conn.fetchrow("SELECT status, result FROM inbox WHERE command_id = $1", command_id)
    return Stored(row["status"], row["result"])


async def finish(conn: asyncpg.Connection, command_id: str, status: Status, result: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE inbox SET status = $2, result = $3, updated_at = now() WHERE command_id = $1",
        command_id,
        status,
        result,
    )


async def record_failure(pool: asyncpg.Pool, command_id: str, kind: str, user_id: str | None, error: str) -> bool:
    """Log a command that could not be applied; False if it was applied meanwhile."""
    return bool(
        await pool.fetchval(
            "INSERT INTO inbox (command_id, kind, user_id, status, result) VALUES ($1, $2, $3, 'failed', $4)"
            " ON CONFLICT (command_id) DO UPDATE SET result = EXCLUDED.result, updated_at = now()"
            " WHERE inbox.status = 'failed' RETURNING true",
            command_id,
            kind,
            user_id,
            {"error": error[:2000]},
        )
    )
