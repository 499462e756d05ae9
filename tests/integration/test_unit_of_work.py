"""The command unit of work (workers/unit_of_work.py) against the real PostgreSQL: one claim, one
outcome, replays, batches of commands in one transaction, and savepoint isolation."""

from __future__ import annotations

import uuid

import pytest

from infra import inbox
from workers.emits import emit
from workers.unit_of_work import UndecidedCommand, command_tx, commands_tx


def key(name: str) -> inbox.Key:
    return inbox.Key(f"uow:{name}:{uuid.uuid4().hex[:8]}", "test", None)


async def row(pool, command_id):
    return await pool.fetchrow("SELECT status, result, attempts FROM inbox WHERE command_id = $1", command_id)


async def test_a_command_is_applied_once_and_replayed_after(ledger):
    k = key("once")
    async with command_tx(ledger, k) as tx:
        assert tx.replayed is None
        first = tx.apply([emit("e", "room:r", {"n": 1})], words=3)
    assert first.fresh and first.status == "applied"
    stored = await row(ledger, k.command_id)
    assert stored["status"] == "applied" and stored["result"]["words"] == 3

    async with command_tx(ledger, k) as tx:
        again = tx.replayed
        assert again is not None
    assert not again.fresh and again.emits == first.emits and again.log_status == "duplicate"


async def test_an_exception_rolls_the_claim_back(ledger):
    k = key("rollback")
    with pytest.raises(RuntimeError):
        async with command_tx(ledger, k) as tx:
            tx.apply()
            raise RuntimeError("boom")
    assert await row(ledger, k.command_id) is None
    async with command_tx(ledger, k) as tx:
        assert tx.replayed is None
        tx.reject(reason="second try")
    assert (await row(ledger, k.command_id))["status"] == "rejected"


async def test_a_body_that_decides_nothing_is_a_bug_and_commits_nothing(ledger):
    k = key("undecided")
    with pytest.raises(UndecidedCommand):
        async with command_tx(ledger, k):
            pass
    assert await row(ledger, k.command_id) is None


async def test_a_failed_command_may_be_claimed_again(ledger):
    k = key("failed")
    assert await inbox.record_failure(ledger, k.command_id, "test", None, "earlier")
    async with command_tx(ledger, k) as tx:
        assert tx.replayed is None
        tx.apply()
    stored = await row(ledger, k.command_id)
    assert stored["status"] == "applied" and stored["attempts"] == 2


async def test_a_batch_claims_and_records_many_commands_in_one_transaction(ledger):
    done, fresh, twin = key("done"), key("fresh"), None
    async with command_tx(ledger, done) as tx:
        tx.apply([emit("e", "room:r", {"done": True})])
    keys = [fresh, done, fresh, key("other")]
    async with ledger.acquire() as conn, conn.transaction(), commands_tx(conn, keys) as txs:
        first, replay, twin, other = txs
        assert first.replayed is None and other.replayed is None
        assert replay.replayed is not None and replay.replayed.emits[0]["data"] == {"done": True}
        first.apply([emit("e", "room:r", {"fresh": 1})])
        other.reject()
        # The first copy's emits go out with the batch: the copy sends nothing a second time.
        assert twin.replayed is not None and twin.replayed.emits == [] and not twin.replayed.fresh
        with pytest.raises(UndecidedCommand):
            twin.apply()  # a copy of a command in the batch is never applied twice
    assert (await row(ledger, fresh.command_id))["status"] == "applied"
    assert (await row(ledger, keys[3].command_id))["status"] == "rejected"


async def test_a_savepoint_isolates_one_failing_command_of_a_batch(ledger):
    good, bad = key("good"), key("bad")
    async with ledger.acquire() as conn, conn.transaction():
        for k in (good, bad):
            try:
                async with conn.transaction(), commands_tx(conn, [k]) as (tx,):
                    if k is bad:
                        raise ValueError("poison")
                    tx.apply()
            except ValueError:
                pass
    assert (await row(ledger, good.command_id))["status"] == "applied"
    assert await row(ledger, bad.command_id) is None


async def test_a_replay_sends_the_emits_again_only_until_they_are_marked_published(ledger):
    k = key("emitted")
    follow = {"queue": "chat", "actor": "a", "command": {"command_id": "f"}}
    async with command_tx(ledger, k) as tx:
        first = tx.apply([emit("e", "room:r", {"n": 1})], [follow])
    assert first.emitted_ids == (k.command_id,)
    async with command_tx(ledger, k) as tx:
        unmarked = tx.replayed
    assert unmarked is not None and unmarked.emits == first.emits and unmarked.emitted_ids == (k.command_id,)

    await inbox.mark_emitted(ledger, [k.command_id])
    async with command_tx(ledger, k) as tx:
        marked = tx.replayed
    assert marked is not None and marked.emits == [] and marked.emitted_ids == ()
    assert marked.follow_ups == [follow]  # follow-ups are published again: their workers dedupe


async def test_a_failed_command_claimed_again_starts_unpublished(ledger):
    k = key("failed-again")
    await inbox.record_failure(ledger, k.command_id, k.kind, None, "boom")
    await inbox.mark_emitted(ledger, [k.command_id])
    async with command_tx(ledger, k) as tx:
        assert tx.replayed is None
        tx.apply([emit("e", "room:r", {"n": 2})])
    emitted = await ledger.fetchval("SELECT emitted_at FROM inbox WHERE command_id = $1", k.command_id)
    assert emitted is None  # this attempt's emits are not published yet
