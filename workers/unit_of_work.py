"""The unit of work every command runs in: claim its inbox row or replay what it did before, apply
it, and record the outcome, all in one PostgreSQL transaction::

    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.user_id)) as tx:
        if tx.replayed:
            return tx.replayed  # applied before: re-run its stored effects, change nothing
        ...  # the command's own reads and writes, on tx.conn
        return tx.apply(emits, follow_ups, words=words)  # or tx.reject(...)

The outcome is written to the inbox when the block ends, before the commit; an exception rolls
the claim back with everything else, so a retry finds the command unclaimed.

A batch runs many commands through the same steps in one transaction (:func:`commands_tx`): one
statement claims them all, one records every outcome. A command id that appears twice in a batch
is applied once; its later copies replay the first copy's outcome. To isolate one command of a
batch (the fallback after the batch as a whole failed), claim it inside its own savepoint,
``async with conn.transaction(), commands_tx(conn, [key]) as (tx,):``, so that a failing command
rolls back its claim and its writes alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from infra import inbox
from infra.db import Conn
from workers.effects import FollowUp, Outcome, replay
from workers.emits import Emit


class UndecidedCommand(RuntimeError):
    """A command's body ended without ``apply`` or ``reject``: a bug in its handler."""


class CommandTx:
    """One claimed command inside a transaction: its connection, and the outcome it ends with."""

    __slots__ = ("_outcome", "_result", "_twin", "_user_id", "conn", "key", "stored")

    def __init__(self, conn: Conn, key: inbox.Key, stored: inbox.Stored | None, twin: CommandTx | None = None) -> None:
        self.conn = conn
        self.key = key
        self.stored = stored  # the earlier outcome, for a command applied before
        self._twin = twin  # the earlier copy of this command in the same batch
        self._outcome: Outcome | None = None
        self._result: dict[str, Any] | None = None
        self._user_id: str | None = None

    @property
    def command_id(self) -> str:
        return self.key.command_id

    @property
    def claimed(self) -> bool:
        """Whether this transaction claimed the command (it must be applied now), known before any
        copy of it in the batch is decided."""
        return self.stored is None and self._twin is None

    @property
    def replayed(self) -> Outcome | None:
        """The outcome to re-run when this command was applied before (None: apply it now)."""
        if self.stored is not None:
            return replay(self.stored)
        if self._twin is not None:  # the first copy's effects go out with this batch's: none again
            return Outcome(False, self._twin.outcome.status)
        return None

    @property
    def outcome(self) -> Outcome:
        if self._outcome is None:
            raise UndecidedCommand(f"command {self.command_id} has no outcome yet")
        return self._outcome

    @property
    def decided(self) -> bool:
        return self._outcome is not None

    def attribute_to(self, user_id: str | None) -> None:
        """Record the command against ``user_id``, learnt while applying it (the event log's user)."""
        self._user_id = user_id

    def apply(self, emits: Sequence[Emit] = (), follow_ups: Sequence[FollowUp] = (), **result: Any) -> Outcome:
        """The command changed state: its effects are carried out after the commit."""
        return self._decide("applied", emits, follow_ups, result)

    def reject(self, emits: Sequence[Emit] = (), follow_ups: Sequence[FollowUp] = (), **result: Any) -> Outcome:
        """The command was refused: nothing it asked for happened (its notices still go out)."""
        return self._decide("rejected", emits, follow_ups, result)

    def _decide(
        self, status: inbox.Status, emits: Sequence[Emit], follow_ups: Sequence[FollowUp], result: dict[str, Any]
    ) -> Outcome:
        if self.stored is not None or self._twin is not None:
            raise UndecidedCommand(f"command {self.command_id} was applied before: replay it, do not decide it")
        if self._outcome is not None:
            raise UndecidedCommand(f"command {self.command_id} is already {self._outcome.status}")
        self._outcome = Outcome(True, status, list(emits), list(follow_ups), (self.command_id,))
        self._result = self._outcome.stored_result(**result)
        return self._outcome

    def _record(self) -> inbox.Finish | None:
        if self.stored is not None or self._twin is not None:
            return None
        if self._outcome is None or self._result is None:
            raise UndecidedCommand(f"command {self.command_id} ended without apply() or reject()")
        return inbox.Finish(self.command_id, self._outcome.status, self._result, self._user_id)


@asynccontextmanager
async def commands_tx(conn: Conn, keys: Sequence[inbox.Key]) -> AsyncIterator[list[CommandTx]]:
    """Claim ``keys`` in the caller's transaction, one :class:`CommandTx` each, in order; at the end
    of the block record every fresh command's outcome in one statement."""
    stored = await inbox.claim_many(conn, keys)
    firsts: dict[str, CommandTx] = {}
    txs = []
    for key in keys:
        twin = firsts.get(key.command_id)
        tx = CommandTx(conn, key, stored[key.command_id] if twin is None else None, twin)
        firsts.setdefault(key.command_id, tx)
        txs.append(tx)
    yield txs
    await inbox.finish_many(conn, [r for tx in txs if (r := tx._record()) is not None])


@asynccontextmanager
async def command_tx(pool: asyncpg.Pool, key: inbox.Key) -> AsyncIterator[CommandTx]:
    """One command in its own transaction (see the module's docstring)."""
    async with pool.acquire() as conn, conn.transaction(), commands_tx(conn, [key]) as (tx,):
        yield tx
