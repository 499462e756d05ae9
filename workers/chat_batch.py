"""Apply a batch of chat messages (one ``chat.send_batch`` delivery) in one PostgreSQL transaction.

One statement claims every command's inbox row (:func:`workers.unit_of_work.commands_tx`); the
messages are then charged and stored by the same set-based code as a single send
(:func:`workers.chat_service.apply_sends`: accounts locked in one statement in a fixed order,
each message decided by the spending policy in batch order, each kind of write one statement);
the event-log rows are written in the same transaction, and one statement records every outcome:
one commit, one WAL flush for the whole batch. A command id that appears twice, or was applied before, replays its
stored outcome.

If the batch fails as a whole with an error that is not transient, it is applied again one
command per savepoint: a poison command then fails alone (:attr:`BatchResult.poisoned`) while
the others commit. A transient error (a deadlock, a lost connection) is raised, and the whole
batch is retried: every command in it is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog

from infra import event_log
from schemas.commands import SendChatMessage
from schemas.queues import CHAT_QUEUE, SEND_MESSAGE_ACTOR
from workers.chat_service import ChatTerms, apply_sends, send_key
from workers.db_retry import TRANSIENT  # errors that say nothing about the commands: retry the whole batch
from workers.effects import Outcome
from workers.unit_of_work import commands_tx

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class BatchResult:
    applied: list[tuple[SendChatMessage, Outcome]] = field(default_factory=list)
    poisoned: list[tuple[SendChatMessage, BaseException]] = field(default_factory=list)


async def apply_batch(pool: asyncpg.Pool, commands: Sequence[SendChatMessage], terms: ChatTerms) -> BatchResult:
    try:
        return await _all_at_once(pool, commands, terms)
    except TRANSIENT:
        raise
    except Exception as exc:
        log.warning("chat.batch_fallback", commands=len(commands), error=repr(exc))
    return await _one_by_one(pool, commands, terms)


def _log_entry(cmd: SendChatMessage, status: event_log.Status, error: str | None = None) -> event_log.Entry:
    entry = event_log.entry_for(CHAT_QUEUE, SEND_MESSAGE_ACTOR, cmd.model_dump(mode="json"), status, error)
    assert entry is not None  # a chat command always has its id
    return entry


async def _all_at_once(pool: asyncpg.Pool, commands: Sequence[SendChatMessage], terms: ChatTerms) -> BatchResult:
    result = BatchResult()
    async with pool.acquire() as conn, conn.transaction():
        async with commands_tx(conn, [send_key(cmd) for cmd in commands]) as txs:
            await apply_sends(conn, [(cmd, tx) for cmd, tx in zip(commands, txs, strict=True) if tx.claimed], terms)
            result.applied += [(cmd, tx.replayed or tx.outcome) for cmd, tx in zip(commands, txs, strict=True)]
        await event_log.record_many(conn, [_log_entry(cmd, outcome.log_status) for cmd, outcome in result.applied])
    return result


async def _one_by_one(pool: asyncpg.Pool, commands: Sequence[SendChatMessage], terms: ChatTerms) -> BatchResult:
    result = BatchResult()
    async with pool.acquire() as conn, conn.transaction():
        for cmd in commands:
            try:
                async with conn.transaction(), commands_tx(conn, [send_key(cmd)]) as (tx,):
                    if tx.claimed:
                        await apply_sends(conn, [(cmd, tx)], terms)
                    outcome = tx.replayed or tx.outcome
            except TRANSIENT:
                raise
            except Exception as exc:
                result.poisoned.append((cmd, exc))
                continue
            result.applied.append((cmd, outcome))
        entries = [_log_entry(cmd, outcome.log_status) for cmd, outcome in result.applied]
        entries += [_log_entry(cmd, "failed", repr(exc)) for cmd, exc in result.poisoned]
        await event_log.record_many(conn, entries)
    return result
