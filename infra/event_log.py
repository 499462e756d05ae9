"""The event log (migration 0009): every command a worker processed, as delivered, with its outcome.

Workers write one row per command (``workers/middleware/event_log.py``); ``python -m scripts.replay`` reads
it to re-enqueue a range, then compares each replayed row before and after to say what the replay
did. The idempotency inbox remains what makes a replay harmless; this is the operator's view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from infra.db import Conn

Status = Literal["applied", "rejected", "failed", "duplicate"]
STATUSES: Final = ("applied", "rejected", "failed", "duplicate")
Verdict = Literal["re-applied", "no-op", "failed", "pending"]

_USER_KEYS = ("user_id", "asker_user_id", "operator_id", "sender_id")


@dataclass(frozen=True, slots=True)
class Entry:
    """One processed delivery of a command."""

    command_id: str
    queue_name: str
    actor_name: str
    command_type: str
    user_id: str | None
    tenant_id: str | None
    payload: dict[str, Any]
    status: Status
    error: str | None = None


def subjects(command: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(user, tenant) a command is about, for the replay filters; either may be None."""
    asker = a if isinstance(a := command.get("asker"), str) else ""
    kind, _, who = asker.partition(":")
    user = next((v for k in _USER_KEYS if isinstance(v := command.get(k), str) and v), None)
    tenant = t if isinstance(t := command.get("tenant_id"), str) else None
    return user or (who if kind == "user" and who else None), tenant or (who if kind == "tenant" and who else None)


def entry_for(queue: str, actor: str, command: Any, status: Status, error: str | None = None) -> Entry | None:
    """The log entry of a delivered command; None for a body with no command id (nothing to key it on)."""
    if not isinstance(command, dict) or not isinstance(command.get("command_id"), str):
        return None
    user, tenant = subjects(command)
    kind = t if isinstance(t := command.get("type"), str) else "unknown"
    return Entry(
        command["command_id"],
        queue,
        actor,
        kind,
        user,
        tenant,
        command,
        status,
        None if error is None else error[:2000],
    )


# A duplicate never overwrites applied/rejected, and replaces failed (a later delivery found the work
# done); applied/rejected overwrite anything (a replay fixed a failure); a failure overwrites nothing.
_UPSERT = """
INSERT INTO event_log (command_id, queue_name, actor_name, command_type, user_id, tenant_id, payload,
                       status, last_status, deliveries, duplicates, last_error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, ($8 = 'duplicate')::int, $9)
ON CONFLICT (command_id) DO UPDATE SET
    status = CASE
        WHEN EXCLUDED.status IN ('applied', 'rejected') THEN EXCLUDED.status
        WHEN EXCLUDED.status = 'duplicate' AND event_log.status = 'failed' THEN 'duplicate'
        ELSE event_log.status END,
    payload = CASE WHEN EXCLUDED.status IN ('applied', 'rejected') THEN EXCLUDED.payload ELSE event_log.payload END,
    last_status = EXCLUDED.status,
    deliveries = event_log.deliveries + 1,
    duplicates = event_log.duplicates + EXCLUDED.duplicates,
    last_error = coalesce(EXCLUDED.last_error, event_log.last_error),
    last_seen_at = now()
"""


def _row(e: Entry) -> tuple[Any, ...]:
    """The entry as ``_UPSERT``'s arguments, in their order."""
    return (
        e.command_id,
        e.queue_name,
        e.actor_name,
        e.command_type,
        e.user_id,
        e.tenant_id,
        e.payload,
        e.status,
        e.error,
    )


async def record(pool: asyncpg.Pool, e: Entry) -> None:
    await pool.execute(_UPSERT, *_row(e))


async def record_many(conn: Conn, entries: Iterable[Entry]) -> None:
    """Log many processed commands at once, inside the transaction that applied them (a batch)."""
    await conn.executemany(
        _UPSERT,
        [_row(e) for e in sorted(entries, key=lambda e: e.command_id)],
    )


@dataclass(frozen=True, slots=True)
class Filters:
    """Which rows a replay takes. ``since`` is inclusive and ``until`` exclusive, on ``first_seen_at``."""

    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    user_id: str | None = None
    tenant_id: str | None = None
    statuses: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()  # queue_name is one of these (chat: ``chat`` and its partitions)

    def where(self, args: list[Any]) -> str:
        """The SQL condition; appends its parameters to ``args``."""
        clauses: list[str] = []

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if self.since is not None:
            add("first_seen_at >= {}", self.since)
        if self.until is not None:
            add("first_seen_at < {}", self.until)
        if self.types:
            add("command_type = ANY({}::text[])", list(self.types))
        if self.user_id is not None:
            add("user_id = {}", self.user_id)
        if self.tenant_id is not None:
            add("tenant_id = {}", self.tenant_id)
        if self.statuses:
            add("status = ANY({}::text[])", list(self.statuses))
        if self.queues:
            add("queue_name = ANY({}::text[])", list(self.queues))
        return " AND ".join(clauses) or "true"


@dataclass(frozen=True, slots=True)
class Logged:
    command_id: str
    queue_name: str
    actor_name: str
    command_type: str
    status: str
    payload: dict[str, Any]


async def select(pool: asyncpg.Pool, filters: Filters, batch: int = 500) -> AsyncIterator[Logged]:
    """The matching rows, oldest first, read in keyset batches (no long transaction, no OFFSET)."""
    after: tuple[datetime, str] | None = None
    while True:
        args: list[Any] = []
        where = filters.where(args)
        if after is not None:
            args.extend(after)
            where += f" AND (first_seen_at, command_id) > (${len(args) - 1}, ${len(args)})"
        args.append(batch)
        rows = await pool.fetch(
            "SELECT command_id, queue_name, actor_name, command_type, status, payload, first_seen_at FROM event_log"
            f" WHERE {where} ORDER BY first_seen_at, command_id LIMIT ${len(args)}",
            *args,
        )
        for r in rows:
            yield Logged(
                r["command_id"], r["queue_name"], r["actor_name"], r["command_type"], r["status"], r["payload"]
            )
        if len(rows) < batch:
            return
        after = (rows[-1]["first_seen_at"], rows[-1]["command_id"])


async def counts(pool: asyncpg.Pool, filters: Filters) -> list[tuple[str, str, int]]:
    """(command type, status, rows) of the matching rows: what a dry run reports."""
    args: list[Any] = []
    rows = await pool.fetch(
        f"SELECT command_type, status, count(*) AS n FROM event_log WHERE {filters.where(args)}"
        " GROUP BY command_type, status ORDER BY command_type, status",
        *args,
    )
    return [(r["command_type"], r["status"], r["n"]) for r in rows]


@dataclass(frozen=True, slots=True)
class Mark:
    """A row's counters at one moment, to tell what a replay's delivery did."""

    status: str
    last_status: str
    deliveries: int
    duplicates: int
    last_error: str | None


async def marks(pool: asyncpg.Pool, command_ids: Iterable[str]) -> dict[str, Mark]:
    ids = list(dict.fromkeys(command_ids))
    found: dict[str, Mark] = {}
    for i in range(0, len(ids), 5000):
        rows = await pool.fetch(
            "SELECT command_id, status, last_status, deliveries, duplicates, last_error FROM event_log"
            " WHERE command_id = ANY($1::text[])",
            ids[i : i + 5000],
        )
        for r in rows:
            found[r["command_id"]] = Mark(
                r["status"], r["last_status"], r["deliveries"], r["duplicates"], r["last_error"]
            )
    return found


def verdict(before: Mark | None, after: Mark | None) -> Verdict:
    """What the deliveries between two marks did: no new delivery yet is ``pending``; otherwise the
    latest one decides (a duplicate is a no-op, applied or rejected is re-applied)."""
    if after is None or (before is not None and after.deliveries <= before.deliveries):
        return "pending"
    if after.last_status == "duplicate":
        return "no-op"
    if after.last_status == "failed":
        return "failed"
    return "re-applied"


# Retention. Only the log: the inbox (the idempotency record) is never touched, so a pruned command
# is still applied at most once; it just can no longer be replayed from the log.


def _prune_where(before: datetime, statuses: tuple[str, ...], args: list[Any]) -> str:
    args.append(before)
    where = f"last_seen_at < ${len(args)}"
    if statuses:
        args.append(list(statuses))
        where += f" AND status = ANY(${len(args)}::text[])"
    return where


async def prunable(pool: asyncpg.Pool, before: datetime, statuses: tuple[str, ...] = ()) -> int:
    """How many rows ``prune`` would delete now: last seen before ``before`` (and in ``statuses``)."""
    args: list[Any] = []
    return await pool.fetchval(f"SELECT count(*) FROM event_log WHERE {_prune_where(before, statuses, args)}", *args)


async def prune_batch(pool: asyncpg.Pool, before: datetime, statuses: tuple[str, ...] = (), limit: int = 5000) -> int:
    """Delete at most ``limit`` such rows in one short transaction; returns how many went.

    The condition is repeated on the outer DELETE so a row redelivered meanwhile (its ``last_seen_at``
    moved to now) is re-checked under READ COMMITTED and kept.
    """
    args: list[Any] = []
    where = _prune_where(before, statuses, args)
    args.append(limit)
    status = await pool.execute(
        f"DELETE FROM event_log WHERE {where} AND command_id IN"
        f" (SELECT command_id FROM event_log WHERE {where} ORDER BY last_seen_at LIMIT ${len(args)})",
        *args,
    )
    return int(status.split()[-1])
