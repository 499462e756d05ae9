"""The idempotency inbox, which doubles as the log of every command a worker has seen.

A worker claims a command by inserting its row inside the same transaction that
applies it. A duplicate blocks on the unique key until the first transaction
ends, then finds the row and re-publishes the stored result instead of applying
it again. A command recorded as ``failed`` may be claimed again (by a replay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from infra.db import Conn, ConnOrPool

Status = Literal["applied", "rejected", "failed"]


@dataclass(frozen=True, slots=True)
class Stored:
    command_id: str
    status: Status
    result: dict[str, Any]
    emitted: bool = False  # its emits were published (mark_emitted): a replay must not send them again


@dataclass(frozen=True, slots=True)
class Key:
    """What an inbox row is claimed under: the command, its kind, and the user it concerns."""

    command_id: str
    kind: str
    user_id: str | None


async def claim_many(conn: Conn, keys: Sequence[Key]) -> dict[str, Stored | None]:
    """Claim every command in ``keys`` for this transaction, in one statement.

    Maps each command id to None when this transaction claimed it (apply it now), or to the stored
    outcome of an earlier transaction (replay it). A command id listed twice is claimed once: the
    later copies see the first one's row. Rows are inserted in ``command_id`` order, so two batches
    that share commands cannot deadlock on them.
    """
    ids = sorted({k.command_id for k in keys})
    first: dict[str, Key] = {}
    for key in keys:
        first.setdefault(key.command_id, key)
    rows = await conn.fetch(
        "INSERT INTO inbox (command_id, kind, user_id, status)"
        " SELECT c, k, u, 'applied' FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, k, u)"
        " ON CONFLICT (command_id) DO UPDATE SET attempts = inbox.attempts + 1, updated_at = now(), emitted_at = NULL"
        " WHERE inbox.status = 'failed' RETURNING command_id",
        ids,
        [first[i].kind for i in ids],
        [first[i].user_id for i in ids],
    )
    claimed = {r["command_id"] for r in rows}
    stored: dict[str, Stored | None] = dict.fromkeys(claimed)
    if len(claimed) < len(ids):
        for row in await conn.fetch(
            "SELECT command_id, status, result, emitted_at IS NOT NULL AS emitted FROM inbox"
            " WHERE command_id = ANY($1::text[])",
            [i for i in ids if i not in claimed],
        ):
            stored[row["command_id"]] = Stored(row["command_id"], row["status"], row["result"], row["emitted"])
    return stored


@dataclass(frozen=True, slots=True)
class Finish:
    """A claimed command's outcome; ``user_id``, when set, replaces the one it was claimed with
    (a plan event's user is known only once it is applied)."""

    command_id: str
    status: Status
    result: dict[str, Any]
    user_id: str | None = None


async def finish_many(conn: Conn, outcomes: Sequence[Finish]) -> None:
    """Record the outcomes of commands this transaction claimed, in one statement."""
    if not outcomes:
        return
    await conn.execute(
        "UPDATE inbox SET status = t.s, result = t.r, user_id = coalesce(t.u, inbox.user_id), updated_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[]) AS t(c, s, r, u) WHERE inbox.command_id = t.c",
        [o.command_id for o in outcomes],
        [o.status for o in outcomes],
        [o.result for o in outcomes],
        [o.user_id for o in outcomes],
    )


async def stored(conn: ConnOrPool, command_id: str) -> Stored | None:
    """The outcome of a command already applied or rejected (None: not yet, or it failed), read
    without claiming it: for work that must not start again (a model call) before the claim."""
    row = await conn.fetchrow(
        "SELECT status, result, emitted_at IS NOT NULL AS emitted FROM inbox WHERE command_id = $1"
        " AND status <> 'failed'",
        command_id,
    )
    return Stored(command_id, row["status"], row["result"], row["emitted"]) if row else None


async def emitted_meanwhile(pool: asyncpg.Pool, command_ids: Sequence[str], within_s: float, recent_s: float) -> bool:
    """Whether every one of ``command_ids`` is marked published, waiting up to ``within_s`` for the
    marks of those finished in the last ``recent_s`` (a delivery may be publishing them right now).
    False at once when one finished earlier and is still unmarked: nobody is publishing it."""
    ids = sorted(set(command_ids))
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        row = await pool.fetchrow(
            "SELECT count(*) FILTER (WHERE emitted_at IS NULL) AS unmarked,"
            " count(*) FILTER (WHERE emitted_at IS NULL AND updated_at < now() - make_interval(secs => $2))"
            " AS abandoned FROM inbox WHERE command_id = ANY($1::text[])",
            ids,
            recent_s,
        )
        assert row is not None  # an aggregate returns one row
        if row["unmarked"] == 0:
            return True
        if row["abandoned"] or asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def mark_emitted(pool: asyncpg.Pool, command_ids: Sequence[str]) -> None:
    """Record that the emits of ``command_ids`` were published, in one statement.

    Committed without waiting for the WAL flush: a mark lost in a crash only means that a later
    redelivery publishes those emits once more, the window this mark narrows but cannot close.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = off")
        await conn.execute(
            "UPDATE inbox SET emitted_at = now() WHERE command_id = ANY($1::text[]) AND emitted_at IS NULL",
            sorted(set(command_ids)),  # in key order, as claims take them: no deadlock between batches
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
